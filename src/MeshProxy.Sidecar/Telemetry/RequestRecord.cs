using System.Diagnostics;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// What telemetry learns about one request while a pipeline handles it: when it started, its span (if
/// sampled), and what the pipeline decided. A mutable struct local to the pipeline: no allocation.
/// </summary>
internal struct RequestRecord
{
    /// <summary><see cref="Stopwatch"/> timestamp at the start, for the duration.</summary>
    public long Started;

    /// <summary>Wall clock at the start, read only when the access log is on.</summary>
    public DateTime StartTime;

    /// <summary>The span, when this request is sampled; null otherwise (and no Activity exists).</summary>
    public Activity? Span;

    /// <summary>Why the request ended as it did (none, or the flags the pipeline set).</summary>
    public ResponseFlags Flags;

    /// <summary>Outbound: the service the app called, once resolved.</summary>
    public VirtualHost? Destination;

    /// <summary>The upstream cluster chosen (outbound: after route match; inbound: the local app).</summary>
    public Cluster? Cluster;

    public UpstreamEndpoint? Endpoint;

    /// <summary>The name of the route rule that matched, if it had one.</summary>
    public string? RouteName;

    /// <summary>
    /// The counter on a request body of undeclared length. Kept here rather than found again on
    /// Request.Body, which later steps (the retry buffer) wrap in turn.
    /// </summary>
    public CountingStream? RequestBody;

    /// <summary>The meter of a request that may switch protocols (WebSocket); null on every other request.</summary>
    public MeteredUpgrade? Upgrade;

    /// <summary>Outbound: the destination sidecar's metadata, from its response over mTLS; null otherwise.</summary>
    public PeerMetadata? Peer;

    /// <summary>Outbound: the SPIFFE ID the answering server proved over mTLS (destination_principal); null otherwise.</summary>
    public string? PeerPrincipal;

    /// <summary>Outbound: attempts made upstream (ForwardResult.Attempts); 0 when none was (local reply before forwarding).</summary>
    public int Attempts;

    /// <summary>Egress (not a mesh service) let the request out; false when denied or not egress.</summary>
    public bool EgressAllowed;

    /// <summary>Allowed egress: the EgressPolicy ("namespace/name") that let it out, for its destination labels; null under ALLOW_ANY.</summary>
    public string? EgressPolicy;
}
