namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Envoy's response flags: why a request ended the way it did, so that an operator can tell a proxy
/// decision from an upstream failure. The short codes are Envoy's, on purpose: dashboards, alerts and
/// runbooks already speak them.
/// </summary>
[Flags]
internal enum ResponseFlags
{
    None = 0,

    /// <summary>UH: the cluster had no healthy endpoint.</summary>
    NoHealthyUpstream = 1 << 0,

    /// <summary>UF: the connection to the upstream could not be made.</summary>
    UpstreamConnectionFailure = 1 << 1,

    /// <summary>UO: a circuit breaker's limit was reached.</summary>
    UpstreamOverflow = 1 << 2,

    /// <summary>NR: no route (or no service) for the request.</summary>
    NoRoute = 1 << 3,

    /// <summary>URX: retries or the retry budget were exhausted.</summary>
    UpstreamRetryLimitExceeded = 1 << 4,

    /// <summary>UT: the upstream did not answer in time.</summary>
    UpstreamRequestTimeout = 1 << 5,

    /// <summary>UC: the upstream connection ended before the response did.</summary>
    UpstreamConnectionTermination = 1 << 6,

    /// <summary>DC: the downstream (the caller) went away.</summary>
    DownstreamConnectionTermination = 1 << 7,

    /// <summary>DPE: the downstream request could not be forwarded as sent.</summary>
    DownstreamProtocolError = 1 << 8,

    /// <summary>UPE: the upstream answered with something that is not valid HTTP.</summary>
    UpstreamProtocolError = 1 << 9,

    /// <summary>SI: a stream (an upgraded connection, say) sat idle past its timeout.</summary>
    StreamIdleTimeout = 1 << 10,

    /// <summary>
    /// UPI (MeshProxy's own, not Envoy's): the upstream's mTLS certificate was refused — a SPIFFE ID the
    /// destination may not have, another trust domain, an untrusted issuer. Envoy folds this into UF; a
    /// mesh keeps it apart because a wrong peer is a security event, not an outage.
    /// </summary>
    UpstreamPeerIdentity = 1 << 11,

    /// <summary>
    /// SNR (MeshProxy's own, not Envoy's): the sidecar itself could not forward yet — no first configuration
    /// or, for an mTLS destination, no certificate — within the outbound hold (Pipelines/OutboundReadiness.cs),
    /// or its own side of the connection could not be set up. The request never left this sidecar, so no
    /// upstream is blamed: it feeds neither outlier detection nor the retry budget. Envoy has no exact
    /// equivalent (it does not listen before it has its configuration and certificates; UF would wrongly
    /// name the upstream).
    /// </summary>
    SidecarNotReady = 1 << 12,

    /// <summary>UAEX: the external authorization provider (a CUSTOM policy's) denied the request, or failed with failOpen off.</summary>
    UnauthorizedExternalService = 1 << 13,

    /// <summary>
    /// URBAC (MeshProxy's own, not Envoy's): the destination's sidecar denied a TCP stream by its authorization
    /// policy and said so in the stream's metadata exchange (Tcp/PeerPreamble.cs). Recorded by the caller, which in
    /// Envoy sees only a closed connection (UF or nothing); a policy decision is not an outage, so it stays apart.
    /// </summary>
    UpstreamDenied = 1 << 14,
}

internal static class ResponseFlagCodes
{
    private static readonly (ResponseFlags Flag, string Code)[] Codes =
    [
        (ResponseFlags.NoHealthyUpstream, "UH"),
        (ResponseFlags.UpstreamConnectionFailure, "UF"),
        (ResponseFlags.UpstreamOverflow, "UO"),
        (ResponseFlags.NoRoute, "NR"),
        (ResponseFlags.UpstreamRetryLimitExceeded, "URX"),
        (ResponseFlags.UpstreamRequestTimeout, "UT"),
        (ResponseFlags.UpstreamConnectionTermination, "UC"),
        (ResponseFlags.DownstreamConnectionTermination, "DC"),
        (ResponseFlags.DownstreamProtocolError, "DPE"),
        (ResponseFlags.UpstreamProtocolError, "UPE"),
        (ResponseFlags.StreamIdleTimeout, "SI"),
        (ResponseFlags.UpstreamPeerIdentity, "UPI"),
        (ResponseFlags.SidecarNotReady, "SNR"),
        (ResponseFlags.UnauthorizedExternalService, "UAEX"),
        (ResponseFlags.UpstreamDenied, "URBAC"),
    ];

    /// <summary>"-" for none (Envoy's spelling), the code for one flag, codes joined by commas for several.</summary>
    public static string ToCode(this ResponseFlags flags)
    {
        if (flags == ResponseFlags.None)
        {
            return "-";
        }

        foreach (var (flag, code) in Codes)
        {
            if (flags == flag)
            {
                return code; // the common case: one flag, a cached string
            }
        }

        return Join(flags);
    }

    // Apart from ToCode: a lambda capturing the parameter there would allocate its closure on every
    // call, the common single-flag path included.
    private static string Join(ResponseFlags flags) => string.Join(',', Codes.Where(c => flags.HasFlag(c.Flag)).Select(c => c.Code));
}
