using System.Text.Json;
using System.Text.Json.Serialization;
using MeshProxy.Sidecar.Configuration;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Sidecar.Hosting;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Admin;

/// <summary>
/// Port 15000, loopback only: what the proxy is running with, and the commands that change its state.
/// Commands are POST-only so that a stray GET (a browser, a crawler, a health check misconfigured onto
/// this port) can never drain or stop the proxy.
/// </summary>
internal sealed class AdminEndpoints(SnapshotStore store, SidecarLifecycle lifecycle, SidecarIdentity identity, ILogger<AdminEndpoints> logger)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
    };

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
        var dump = new
        {
            version = snapshot.Version,
            source = snapshot.Source,
            appliedAt = snapshot.AppliedAt,
            stale = snapshot.Stale,
            provisional = snapshot.Provisional,
            lastError = rejection is null ? null : new
            {
                version = rejection.Version,
                at = rejection.At,
                message = rejection.Message,
                errors = rejection.Errors.Select(e => new { file = e.File, line = e.Line, field = e.FieldPath, reason = e.Reason }),
            },
            workload = snapshot.Workload,
            listeners = new
            {
                outbound = endpoints.Outbound?.ToString(),
                inbound = endpoints.Inbound?.ToString(),
                admin = endpoints.Admin?.ToString(),
                stats = endpoints.Stats?.ToString(),
            },
            inbound = new { cluster = snapshot.InboundCluster.Name, protocol = snapshot.InboundCluster.Protocol },
            virtualHosts = snapshot.Services.VirtualHosts.Select(v => new
            {
                service = v.ServiceFqdn,
                port = v.Port,
                cluster = v.DefaultCluster.Name,
                protocol = v.DefaultCluster.Protocol,
                endpoints = v.DefaultCluster.Endpoints.Select(e => new { address = e.Address, port = e.Port, weight = e.Weight, identity = e.Identity }),
                health = Resilience.ResilienceDump.Of(v.DefaultCluster),
                rules = v.Rules.Select(r => new { name = r.Name, destinations = r.Destinations.Select(d => new { cluster = d.Cluster.Name, weight = d.Weight }) }),
            }),
            resources = snapshot.Resources.Select(r => new { kind = r.Kind, @namespace = r.Metadata.Namespace, name = r.Metadata.Name, source = r.Source.ToString() }),
        };
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, dump, Json, context.RequestAborted);
    }

    /// <summary>The workload's SVID (chain, SPIFFE ID, validity, seconds to expiry) and trust bundle, as Envoy's /certs shows them.</summary>
    private Task CertsAsync(HttpContext context)
    {
        var svid = identity.Store.Current;
        var bundle = identity.Store.TrustBundle;
        var now = DateTimeOffset.UtcNow;
        var counters = identity.Counters;
        var certs = new
        {
            enabled = identity.Enabled,
            mtlsMode = store.Current.Mesh.Mtls,
            trustDomain = store.Current.Mesh.TrustDomain,
            spiffeId = svid?.SpiffeId.Value,
            notBefore = svid?.NotBefore,
            notAfter = svid?.NotAfter,
            secondsToExpiry = svid is null ? (long?)null : (long)Math.Floor((svid.NotAfter - now).TotalSeconds),
            chain = svid is null ? null : new[] { svid.Certificate }.Concat(svid.Intermediates).Select(Describe),
            trustBundle = bundle?.Roots.Select(Describe),
            handshakes = new
            {
                inbound = counters.InboundHandshakes,
                inboundPeerRefused = counters.InboundPeerRefused,
                inboundHandshakeFailures = counters.InboundHandshakeFailures,
                plaintextAccepted = counters.PlaintextAccepted,
                plaintextRefused = counters.PlaintextRefused,
                outbound = counters.OutboundHandshakes,
                outboundPeerRefused = counters.OutboundPeerRefused,
                outboundHandshakeFailures = counters.OutboundHandshakeFailures,
            },
        };
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, certs, Json, context.RequestAborted);
    }

    private static object Describe(X509Certificate2 certificate) => new
    {
        subject = certificate.Subject,
        issuer = certificate.Issuer,
        serialNumber = certificate.SerialNumber,
        notBefore = new DateTimeOffset(certificate.NotBefore.ToUniversalTime(), TimeSpan.Zero),
        notAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero),
        sha256 = certificate.GetCertHashString(HashAlgorithmName.SHA256).ToLowerInvariant(),
    };

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
