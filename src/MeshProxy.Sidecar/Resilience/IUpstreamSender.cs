using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// How the attempt loop sends one attempt to the endpoint it chose: the loop's only way down to the
/// upstream-send layer (Forwarding/UpstreamSender.cs: YARP over the cluster's connection pool). The loop
/// decides on what comes back, the error and the response that <see cref="AttemptTransformer"/> saw, so
/// tests put a scripted sender here and drive retries, timeouts and outlier detection without sockets.
/// </summary>
internal interface IUpstreamSender
{
    /// <param name="attempts">The request's attempts; the sender sets <see cref="RequestAttempts.Mtls"/> and sends with <see cref="AttemptTransformer"/>, which asks it whether a response is kept.</param>
    /// <param name="cancellationToken">The attempt's per-try timer (none: CancellationToken.None).</param>
    ValueTask<ForwarderError> SendAsync(HttpContext context, Cluster cluster, UpstreamEndpoint endpoint, RequestAttempts attempts, CancellationToken cancellationToken);
}
