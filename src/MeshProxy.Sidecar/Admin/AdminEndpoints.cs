using MeshProxy.Config.Resources;
using System.Text.Json;
using MeshProxy.Sidecar.Configuration;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Admin;

/// <summary>
/// Port 15000, loopback only: what the proxy is running with, and the commands that change its state.
/// Commands are POST-only so that a stray GET (a browser, a crawler, a health check misconfigured onto
/// this port) can never drain or stop the proxy.
/// </summary>
internal sealed class AdminEndpoints(SnapshotStore store, ISidecarControl lifecycle, SidecarIdentity identity, TimeProvider time, ILogger<AdminEndpoints> logger)
{
    public Task HandleAsync(HttpContext context)
    {
        var method = context.Request.Method;
        return context.Request.Path.Value switch
        {
            "/config_dump" when HttpMethods.IsGet(method) => ConfigDumpAsync(context),
            "/certs" when HttpMethods.IsGet(method) => CertsAsync(context),
            "/drain" when HttpMethods.IsPost(method) => DrainAsync(context),
            "/quitquitquit" when HttpMethods.IsPost(method) => QuitAsync(context),
            "/" when HttpMethods.IsGet(method) => TextAsync(context, 200, "GET /config_dump\nGET /certs\nPOST /drain\nPOST /quitquitquit\n"),
            "/config_dump" or "/certs" or "/drain" or "/quitquitquit" => TextAsync(context, 405, $"{method} not allowed here\n"),
            _ => TextAsync(context, 404, "not found: GET / lists the admin endpoints\n"),
        };
    }

    private Task ConfigDumpAsync(HttpContext context)
    {
        var snapshot = store.Current;
        var rejection = store.LastRejection;
        var endpoints = lifecycle.Endpoints;
        var now = ResilienceClock.Milliseconds(time);
        var dump = new ConfigDump(
            snapshot.Version,
            snapshot.Source,
            snapshot.AppliedAt,
            snapshot.Stale,
            snapshot.Provisional,
            rejection is null ? null : new ConfigDumpRejection(
                rejection.Version,
                rejection.At,
                rejection.Message,
                rejection.Errors.Select(e => new ConfigDumpError(e.File, e.Line, e.FieldPath, e.Reason))),
            snapshot.Workload,
            new ConfigDumpListeners(endpoints.Outbound?.ToString(), endpoints.Inbound?.ToString(), endpoints.Admin?.ToString(), endpoints.Stats?.ToString()),
            new ConfigDumpInbound(snapshot.InboundCluster.Name, snapshot.InboundCluster.Protocol),
            InboundMtlsDump(snapshot),
            snapshot.Services.VirtualHosts.Select(v => new ConfigDumpVirtualHost(
                v.ServiceFqdn,
                v.Port,
                v.DefaultCluster.Name,
                v.DefaultCluster.Protocol,
                v.DefaultCluster.Endpoints.Select(e => new ConfigDumpEndpoint(e.Address, e.Port, e.Weight, e.Identity)),
                ResilienceDump.Of(v.DefaultCluster, now),
                v.Rules.Select(r => new ConfigDumpRule(r.Name, r.Destinations.Select(d => new ConfigDumpDestination(d.Cluster.Name, d.Weight)),
                    r.Mirror is { } m ? new ConfigDumpMirror(m.Cluster.Name, m.Percentage) : null)))),
            snapshot.Resources.Select(r => new ConfigDumpResource(r.Kind, r.Metadata.Namespace, r.Metadata.Name, r.Source.ToString())));
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, dump, AdminJsonContext.Default.ConfigDump, context.RequestAborted);
    }

    /// <summary>
    /// The app's port and every port-level mode, in port order, each with the resource that set its mode; null without
    /// an identity, when inbound is plaintext whatever the configuration says (local development only).
    /// </summary>
    private ConfigDumpInboundMtls? InboundMtlsDump(SidecarSnapshot snapshot)
    {
        if (!identity.Enabled)
        {
            return null;
        }

        var mtls = snapshot.InboundMtls;
        var ports = mtls.Ports.Keys.Append(snapshot.Sidecar.Spec.App.Port).Distinct().Order().Select(port =>
        {
            var setting = mtls.For(port);
            return new ConfigDumpMtlsPort(port, setting.Mode.ToName(), setting.SetBy);
        });
        return new ConfigDumpInboundMtls(new ConfigDumpMtlsMode(mtls.Workload.Mode.ToName(), mtls.Workload.SetBy), ports);
    }

    /// <summary>The workload's SVID (chain, SPIFFE ID, validity, seconds to expiry) and trust bundle, as Envoy's /certs shows them.</summary>
    private Task CertsAsync(HttpContext context)
    {
        var svid = identity.Store.Current;
        var bundle = identity.Store.TrustBundle;
        var now = DateTimeOffset.UtcNow;
        var counters = identity.Counters;
        var certs = new CertsDump(
            identity.Enabled,
            store.Current.InboundMtls.Workload.Mode,
            store.Current.Mesh.TrustDomain,
            svid?.SpiffeId.Value,
            svid?.NotBefore,
            svid?.NotAfter,
            svid is null ? null : (long)Math.Floor((svid.NotAfter - now).TotalSeconds),
            svid is null ? null : new[] { svid.Certificate }.Concat(svid.Intermediates).Select(Describe),
            bundle?.Roots.Select(Describe),
            new HandshakeCounts(
                counters.InboundHandshakes,
                counters.InboundPeerRefused,
                counters.InboundHandshakeFailures,
                counters.PlaintextAccepted,
                counters.PlaintextRefused,
                counters.TlsOnDisabledPort,
                counters.OutboundHandshakes,
                counters.OutboundPeerRefused,
                counters.OutboundHandshakeFailures));
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, certs, AdminJsonContext.Default.CertsDump, context.RequestAborted);
    }

    private static CertificateDump Describe(X509Certificate2 certificate) => new(
        certificate.Subject,
        certificate.Issuer,
        certificate.SerialNumber,
        new DateTimeOffset(certificate.NotBefore.ToUniversalTime(), TimeSpan.Zero),
        new DateTimeOffset(certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero),
        certificate.GetCertHashString(HashAlgorithmName.SHA256).ToLowerInvariant());

    private Task DrainAsync(HttpContext context)
    {
        logger.AdminCommand("drain");
        _ = lifecycle.DrainInboundAsync();
        return TextAsync(context, 200, "draining: readiness off, inbound closed to new connections\n");
    }

    private Task QuitAsync(HttpContext context)
    {
        logger.AdminCommand("quitquitquit");
        context.Response.OnCompleted(() =>
        {
            lifecycle.RequestQuit();
            return Task.CompletedTask;
        });
        return TextAsync(context, 200, "OK\n");
    }

    private static Task TextAsync(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(text);
    }
}
