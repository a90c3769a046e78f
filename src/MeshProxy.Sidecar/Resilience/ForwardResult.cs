using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>How a forwarded request ended: its flags (None on success), the endpoint of the last attempt, how many attempts were made, and the answering sidecar's metadata and proven SPIFFE ID (over mTLS only).</summary>
internal readonly record struct ForwardResult(ResponseFlags Flags, UpstreamEndpoint? Endpoint, int Attempts, PeerMetadata? Peer = null, string? PeerPrincipal = null);
