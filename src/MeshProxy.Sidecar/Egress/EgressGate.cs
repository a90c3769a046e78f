using System.Net;
using System.Net.Sockets;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Egress;

/// <summary>Why an egress attempt was refused: the value of the metric's reason label.</summary>
internal static class EgressDenyReason
{
    /// <summary>No EgressPolicy allows the host and port, and the mesh is REGISTRY_ONLY.</summary>
    public const string NotAllowed = "not_allowed";

    /// <summary>An allowed name, sent to an address that name does not resolve to.</summary>
    public const string Spoofed = "spoofed";

    /// <summary>An allowed name that does not resolve: nothing it could be checked against.</summary>
    public const string Unresolvable = "unresolvable";

    /// <summary>TLS without a server name (or with a malformed ClientHello): nothing to decide on.</summary>
    public const string NoServerName = "no_sni";
}

/// <param name="Addresses">Where the sidecar may connect: the name's addresses (or the original destination under ALLOW_ANY).</param>
internal sealed record EgressCheck(EgressDecision Decision, string? DenyReason, IPAddress[] Addresses)
{
    public bool Allowed => DenyReason is null;
}

/// <summary>
/// One decision for every kind of egress (HTTP Host, TLS SNI, CONNECT): the policy verdict, then —
/// where a policy allowed a name — the name resolved by the sidecar itself, and a transparently
/// captured connection's original address checked against it. Denials are logged and counted here.
/// </summary>
internal sealed class EgressGate(EgressResolver resolver, SidecarTelemetry telemetry, ILogger<EgressGate> logger)
{
    public async Task<EgressCheck> CheckAsync(
        EgressRules rules, WorkloadSpec workload, string host, int port, EgressTraffic traffic, IPEndPoint? original, CancellationToken cancellationToken)
    {
        var decision = rules.Decide(host, port, traffic);
        if (!decision.Allowed)
        {
            return Deny(decision, EgressDenyReason.NotAllowed, host, port, traffic, original, workload);
        }

        // ALLOW_ANY with a captured connection: Istio's passthrough, to where the app dialled.
        if (decision.Verdict == EgressVerdict.AllowedAny && original is not null)
        {
            return new EgressCheck(decision, null, [original.Address]);
        }

        IPAddress[] addresses;
        try
        {
            addresses = await resolver.ResolveAsync(host, cancellationToken);
        }
        catch (SocketException)
        {
            return Deny(decision, EgressDenyReason.Unresolvable, host, port, traffic, original, workload);
        }

        if (original is not null && !EgressResolver.Contains(addresses, original.Address))
        {
            return Deny(decision, EgressDenyReason.Spoofed, host, port, traffic, original, workload);
        }

        // A captured connection goes where it was sent (now known to be one of the name's addresses).
        return new EgressCheck(decision, null, original is null ? addresses : [original.Address]);
    }

    /// <summary>For a connection refused before any name was known (TLS without SNI).</summary>
    public void DenyUnnamed(WorkloadSpec workload, string reason, EgressTraffic traffic, IPEndPoint? original) =>
        Deny(new EgressDecision(EgressVerdict.Denied, null), reason, "", original?.Port ?? 0, traffic, original, workload);

    public static string ProtocolLabel(EgressTraffic traffic) => traffic switch
    {
        EgressTraffic.Http => "http",
        EgressTraffic.Tls => "tls",
        _ => "connect",
    };

    private EgressCheck Deny(EgressDecision decision, string reason, string host, int port, EgressTraffic traffic, IPEndPoint? original, WorkloadSpec workload)
    {
        var protocol = ProtocolLabel(traffic);
        logger.EgressDenied(protocol, reason, host, port, original, workload.Namespace, workload.Name);
        telemetry.Proxy.EgressDenied(protocol, reason);
        return new EgressCheck(decision with { Verdict = EgressVerdict.Denied }, reason, []);
    }
}
