using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Pipelines;

/// <summary>
/// Other workloads' requests to the local app (listener 15006), top to bottom:
/// snapshot -> request id -> (the caller's SPIFFE ID, verified once per connection by Listeners/InboundTls.cs,
/// readable as PeerIdentity.Of(context); null on PERMISSIVE plaintext) -> forward to 127.0.0.1:appPort (x-forwarded-*, caller identity header
/// reset) -> failures as response flags.
/// </summary>
internal sealed class InboundPipeline(SnapshotStore store, IHttpForwarder forwarder, UpstreamTransport transport, ILogger<InboundPipeline> logger)
{
    private const string Direction = "inbound";

    public async Task HandleAsync(HttpContext context)
    {
        // 1. One snapshot for the whole request.
        var snapshot = store.Current;
        RequestIds.Ensure(context.Request);

        // 2. The local app is the only upstream.
        var cluster = snapshot.InboundCluster;
        var endpoint = cluster.Endpoints[0];

        // 3. Forward, streaming both bodies.
        var error = await forwarder.SendAsync(context, endpoint.DestinationPrefix, transport.Inbound,
            UpstreamTransport.ConfigFor(cluster.Protocol), MeshRequestTransformer.Inbound);

        // 4. Failures become a response flag, a log line and, if nothing was sent yet, a clear answer.
        if (error != ForwarderError.None)
        {
            await UpstreamFailure.RespondAsync(context, error, cluster, endpoint, Direction, logger);
        }
    }
}
