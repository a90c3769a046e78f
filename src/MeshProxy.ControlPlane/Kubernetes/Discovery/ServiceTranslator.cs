using System.Globalization;
using System.Text;
using k8s.Models;

namespace MeshProxy.ControlPlane.Kubernetes.Discovery;

/// <summary>
/// A Kubernetes Service, its EndpointSlices and their Pods, as the mesh's Service resource (YAML, which the
/// control plane parses with the sidecar's own parser and ships as is). Pure: same input, same text.
/// <list type="bullet">
/// <item>Hosts: <c>name</c>, <c>name.ns</c>, <c>name.ns.svc.&lt;clusterDomain&gt;</c>; addresses: the cluster IPs
/// (none for a headless Service), which is what a captured connection is matched on.</item>
/// <item>Port protocol: <c>appProtocol</c> (IANA names and the kubernetes.io/ ones), else Istio's port-name prefix
/// (<c>http-</c>, <c>grpc-</c>, <c>tcp-</c>...), else left unset: the sidecar has no protocol sniffing and takes HTTP.</item>
/// <item>Endpoints: ready ones; serving-but-terminating ones only while no endpoint is ready (kube-proxy's rule: a
/// draining pod still answers rather than nothing at all); not-ready ones never. A terminating endpoint leaves the
/// snapshot, and the sidecar's requests already in flight to it finish on the snapshot they started with.</item>
/// <item>Identity: the service account of the Pod each endpoint's targetRef names. An endpoint whose Pod is not
/// known (yet) is left out: pushing it without an identity would make the sidecars refuse it anyway.</item>
/// <item>ExternalName: an egress host, its one endpoint the external name.</item>
/// </list>
/// </summary>
internal static class ServiceTranslator
{
    public const string ServiceNameLabel = "kubernetes.io/service-name";

    /// <summary>The YAML of the mesh Service, or null with the reason when the Service cannot be one (no ports...).</summary>
    public static string? Translate(V1Service service, IEnumerable<V1EndpointSlice> slices, Func<string, string, V1Pod?> pod, string clusterDomain, out string? skipped)
    {
        var ns = service.Metadata.NamespaceProperty ?? "default";
        var name = service.Metadata.Name;
        var spec = service.Spec ?? new V1ServiceSpec();
        if (spec.Ports is not { Count: > 0 })
        {
            skipped = "it has no ports";
            return null;
        }

        var external = string.Equals(spec.Type, "ExternalName", StringComparison.Ordinal);
        if (external && string.IsNullOrEmpty(spec.ExternalName))
        {
            skipped = "type ExternalName without spec.externalName";
            return null;
        }

        var slicePorts = slices.SelectMany(s => s.Ports ?? []).ToList();
        var yaml = new StringBuilder();
        yaml.Append("apiVersion: meshproxy.io/v1alpha1\nkind: Service\n");
        yaml.Append("metadata: { name: ").Append(Quote(name)).Append(", namespace: ").Append(Quote(ns)).Append(" }\nspec:\n");
        yaml.Append("  hosts: [").Append(Quote(name)).Append(", ").Append(Quote($"{name}.{ns}")).Append(", ").Append(Quote($"{name}.{ns}.svc.{clusterDomain}")).Append("]\n");
        var addresses = (spec.ClusterIPs ?? (spec.ClusterIP is { } ip ? [ip] : []))
            .Where(a => !string.IsNullOrEmpty(a) && !string.Equals(a, "None", StringComparison.Ordinal))
            .ToList();
        if (addresses.Count > 0)
        {
            yaml.Append("  addresses: [").Append(string.Join(", ", addresses.Select(Quote))).Append("]\n");
        }

        yaml.Append("  ports:\n");
        foreach (var port in spec.Ports)
        {
            yaml.Append("    - { port: ").Append(port.Port.ToString(CultureInfo.InvariantCulture));
            if (!string.IsNullOrEmpty(port.Name))
            {
                yaml.Append(", name: ").Append(Quote(port.Name));
            }

            if (TargetPort(port, slicePorts) is { } target && !external)
            {
                yaml.Append(", targetPort: ").Append(target.ToString(CultureInfo.InvariantCulture));
            }

            if ((IsOpaque(service, port) ? "TCP" : Protocol(port)) is { } protocol)
            {
                yaml.Append(", protocol: ").Append(protocol);
            }

            yaml.Append(" }\n");
        }

        var endpoints = external ? [(spec.ExternalName!, (string?)null)] : Endpoints(slices, pod);
        if (endpoints.Count > 0)
        {
            yaml.Append("  endpoints:\n");
            foreach (var (address, account) in endpoints)
            {
                yaml.Append("    - { address: ").Append(Quote(address));
                if (account is not null)
                {
                    yaml.Append(", serviceAccount: ").Append(Quote(account));
                }

                yaml.Append(" }\n");
            }
        }

        skipped = null;
        return yaml.ToString();
    }

    /// <summary>The Service annotation listing ports to proxy as opaque TCP whatever their name or appProtocol says.</summary>
    public const string OpaquePortsAnnotation = "meshproxy.io/opaque-ports";

    /// <summary>
    /// True when the Service's <see cref="OpaquePortsAnnotation"/> (comma-separated port numbers, "5432,6379") lists the
    /// port: the sidecars then never sniff it (its server may speak first). A malformed entry is ignored, never an error.
    /// </summary>
    public static bool IsOpaque(V1Service service, V1ServicePort port)
    {
        if (service.Metadata.Annotations?.TryGetValue(OpaquePortsAnnotation, out var list) != true || list is null)
        {
            return false;
        }

        foreach (var entry in list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (int.TryParse(entry, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number == port.Port)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The mesh protocol of a port, or null to leave it to the sidecar's default.</summary>
    public static string? Protocol(V1ServicePort port)
    {
        var fromAppProtocol = port.AppProtocol?.ToLowerInvariant() switch
        {
            "http" or "kubernetes.io/http" => "HTTP",
            "http2" or "h2c" or "kubernetes.io/h2c" => "HTTP2",
            "grpc" => "GRPC",
            "https" => "HTTPS",
            "tls" => "TLS",
            "tcp" or "mongo" or "mysql" or "redis" or "kubernetes.io/ws" or "kubernetes.io/wss" => "TCP",
            _ => null,
        };
        if (fromAppProtocol is not null)
        {
            return fromAppProtocol;
        }

        // Istio's convention: the port name, or its prefix before '-', names the protocol.
        var name = port.Name?.ToLowerInvariant() ?? string.Empty;
        var prefix = name.Split('-', 2)[0];
        return prefix switch
        {
            "http" => "HTTP",
            "http2" or "h2c" => "HTTP2",
            "grpc" or "grpc-web" => "GRPC",
            "https" => "HTTPS",
            "tls" => "TLS",
            "tcp" or "mongo" or "mysql" or "redis" => "TCP",
            _ => null,
        };
    }

    private static int? TargetPort(V1ServicePort port, List<Discoveryv1EndpointPort> slicePorts)
    {
        // A numeric targetPort is the port; a named one is resolved per pod, which the EndpointSlice records by the service port's name.
        if (port.TargetPort?.Value is { } value && int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            return number;
        }

        var resolved = slicePorts.FirstOrDefault(p => string.Equals(p.Name ?? string.Empty, port.Name ?? string.Empty, StringComparison.Ordinal))?.Port;
        return resolved ?? (port.TargetPort is null ? port.Port : null);
    }

    private static List<(string Address, string? Account)> Endpoints(IEnumerable<V1EndpointSlice> slices, Func<string, string, V1Pod?> pod)
    {
        var ready = new SortedDictionary<string, string?>(StringComparer.Ordinal);
        var terminating = new SortedDictionary<string, string?>(StringComparer.Ordinal);
        foreach (var slice in slices)
        {
            if (slice.AddressType is not ("IPv4" or "IPv6"))
            {
                continue; // FQDN slices are written by hand for external names; the Service's own type says that
            }

            foreach (var endpoint in slice.Endpoints ?? [])
            {
                var conditions = endpoint.Conditions;
                // "ready" unset means ready (the API's rule for consumers); terminating ones are never ready.
                var isReady = conditions?.Ready ?? true;
                var isServing = conditions?.Serving ?? isReady;
                var isTerminating = conditions?.Terminating ?? false;
                var into = isReady && !isTerminating ? ready : isServing && isTerminating ? terminating : null;
                if (into is null || endpoint.Addresses is not { Count: > 0 })
                {
                    continue;
                }

                string? account = null;
                if (endpoint.TargetRef is { Kind: "Pod" } target)
                {
                    if (pod(target.NamespaceProperty ?? slice.Metadata.NamespaceProperty ?? "default", target.Name) is not { } owner)
                    {
                        continue;
                    }

                    account = string.IsNullOrEmpty(owner.Spec?.ServiceAccountName) ? "default" : owner.Spec.ServiceAccountName;
                }

                // One pod in two slices (a move between slices) is one endpoint.
                into.TryAdd(endpoint.Addresses[0], account);
            }
        }

        var chosen = ready.Count > 0 ? ready : terminating;
        return [.. chosen.Select(e => (e.Key, e.Value))];
    }

    private static string Quote(string value) => "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
}
