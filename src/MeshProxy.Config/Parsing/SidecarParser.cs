using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Parsing;

internal static class SidecarParser
{
    public static Resource? Parse(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        var workloadMap = spec.Map("workload");
        var workload = new WorkloadSpec(
            workloadMap?.String("name") ?? meta.Name,
            meta.Namespace,
            workloadMap?.String("serviceAccount") ?? "default",
            // The documented default: StringMap answers an absent field with an empty map, never null.
            workloadMap is not null && workloadMap.Has("labels") ? workloadMap.StringMap("labels") : meta.Labels);
        workloadMap?.Finish();

        var appMap = spec.Map("app", required: true);
        var app = new AppSpec(
            appMap?.Port("port", required: true) ?? 0,
            AppProtocols.Parse(appMap?.Enum("protocol", AppProtocols.Names)));
        appMap?.Finish();

        var defaults = ListenerPorts.Default;
        var listenersMap = spec.Map("listeners");
        var listeners = listenersMap is null
            ? defaults
            : new ListenerPorts(
                listenersMap.Port("outbound", allowZero: true) ?? defaults.Outbound,
                listenersMap.Port("inbound", allowZero: true) ?? defaults.Inbound,
                listenersMap.Port("admin", allowZero: true) ?? defaults.Admin,
                listenersMap.Port("stats", allowZero: true) ?? defaults.Stats,
                listenersMap.String("inboundAddress") ?? defaults.InboundAddress,
                listenersMap.String("outboundAddress") ?? defaults.OutboundAddress);
        listenersMap?.Finish();
        if (listenersMap is not null)
        {
            foreach (var (field, reason) in PortConflicts(listeners, app.Port))
            {
                if (field == "listeners")
                {
                    listenersMap.Sink.Error(listenersMap.Node, listenersMap.Path, reason);
                }
                else
                {
                    spec.Error(field, reason);
                }
            }
        }

        var drain = spec.Duration("drainDuration", TimeSpan.Zero, MaxDrainDuration) ?? TimeSpan.FromSeconds(5);

        ControlPlaneSpec? controlPlane = null;
        if (spec.Map("controlPlane") is { } cp)
        {
            var address = cp.String("address", required: true);
            if (address is not null && !Uri.TryCreate(address, UriKind.Absolute, out _))
            {
                cp.Error("address", $"'{address}' is not an absolute URL such as http://127.0.0.1:15010");
            }

            var tokenFile = cp.String("tokenFile");
            var caFile = cp.String("caFile");
            // Over https:// the control plane's certificate is checked against caFile and nothing else (not the system
            // store): without it no handshake could succeed, so the sidecar would never get config rather than fail here.
            if (address is not null && caFile is null
                && Uri.TryCreate(address, UriKind.Absolute, out var uri) && uri.Scheme == Uri.UriSchemeHttps)
            {
                cp.Error("caFile", "an https:// control plane needs caFile: the root that signs the control plane's certificate");
            }

            controlPlane = address is null ? null : new ControlPlaneSpec(address, tokenFile, cp.String("snapshotPath"), caFile);
            cp.Finish();
        }

        SidecarTlsSpec? tls = null;
        if (spec.Map("tls") is { } tlsMap)
        {
            var chain = tlsMap.String("certificateChainFile", required: true);
            var key = tlsMap.String("privateKeyFile", required: true);
            var bundle = tlsMap.String("trustBundleFile", required: true);
            tlsMap.Finish();
            if (chain is not null && key is not null && bundle is not null)
            {
                var baseDirectory = Path.GetDirectoryName(Path.GetFullPath(source.File)) ?? Directory.GetCurrentDirectory();
                tls = new SidecarTlsSpec(
                    Path.GetFullPath(chain, baseDirectory), Path.GetFullPath(key, baseDirectory), Path.GetFullPath(bundle, baseDirectory));
            }
        }

        // Istio's Sidecar inboundConnectionPool, tcp.maxConnections only: the most inbound TCP streams open at once.
        int? inboundMax = null;
        if (spec.Map("inboundConnectionPool") is { } pool)
        {
            if (pool.Map("tcp") is { } tcpPool)
            {
                inboundMax = (int?)tcpPool.Integer("maxConnections", 1, int.MaxValue);
                tcpPool.Finish();
            }

            pool.Finish();
        }

        return new SidecarResource(meta, source, new SidecarSpec(workload, app, listeners, drain, controlPlane, ParseEgress(spec), tls, inboundMax));
    }

    /// <summary>The longest drain a Sidecar may ask for, from its resource or a pod's override.</summary>
    internal static readonly TimeSpan MaxDrainDuration = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Ports of one spec that would collide (field "listeners" or "app", and why): checked on the resource as written and
    /// again once a pod's override is merged over it, since either half alone can be fine.
    /// </summary>
    internal static IEnumerable<(string Field, string Reason)> PortConflicts(ListenerPorts listeners, int appPort)
    {
        var ports = new[] { listeners.Outbound, listeners.Inbound, listeners.Admin, listeners.Stats };
        if (ports.Where(p => p != 0).GroupBy(p => p).Any(g => g.Count() > 1))
        {
            yield return ("listeners", "outbound, inbound, admin and stats must be different ports");
        }

        if (appPort != 0 && ports.Contains(appPort))
        {
            yield return ("app", $"app.port {appPort} collides with one of the sidecar's own listener ports");
        }
    }

    /// <summary>Istio's Sidecar egress: without it a workload may reach every service of the mesh.</summary>
    private static List<EgressHost>? ParseEgress(YamlMap spec)
    {
        if (!spec.Has("egress"))
        {
            return null;
        }

        var result = new List<EgressHost>();
        foreach (var entry in spec.Maps("egress"))
        {
            var hosts = entry.Strings("hosts", required: true);
            for (var i = 0; i < hosts.Count; i++)
            {
                var slash = hosts[i].IndexOf('/');
                var ns = slash < 0 ? string.Empty : hosts[i][..slash];
                var host = slash < 0 ? string.Empty : hosts[i][(slash + 1)..];
                var nsOk = ns is "*" or "." || ResourceParser.IsDnsLabel(ns, 63);
                var hostOk = host == "*" || ResourceParser.IsHostName(host);
                if (!nsOk || !hostOk)
                {
                    entry.Sink.Error(entry.Find("hosts"), $"{entry.Child("hosts")}[{i}]",
                        $"'{hosts[i]}' must be namespace/host, for example ./*, shop/*, */api.example.com");
                    continue;
                }

                result.Add(new EgressHost(ns, host));
            }

            entry.Finish();
        }

        return result;
    }
}
