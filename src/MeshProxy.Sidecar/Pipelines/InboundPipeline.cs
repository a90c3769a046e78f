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
/// snapshot -> request id -> telemetry start -> the caller's SPIFFE ID (verified once per connection by
/// Listeners/InboundTls.cs; null on PERMISSIVE plaintext) -> forward to 127.0.0.1:appPort (x-forwarded-*,
/// caller identity header set by the sidecar) -> failures as response flags -> telemetry (reporter=destination).
/// </summary>
internal sealed class InboundPipeline(SnapshotStore store, IHttpForwarder forwarder, UpstreamTransport transport, SidecarTelemetry telemetry, ILogger<InboundPipeline> logger)
{
    private const string Direction = "inbound";

    public async Task HandleAsync(HttpContext context)
    {
        // 1. One snapshot for the whole request.
        var snapshot = store.Current;
        RequestIds.Ensure(context.Request);

        // T1. Telemetry: the clock starts; a sampled request gets a server span, continuing the caller's trace.
        var record = telemetry.Start(context, snapshot, outbound: false);
        try
        {
            // 2. The local app is the only upstream.
            var cluster = snapshot.InboundCluster;
            var endpoint = cluster.Endpoints[0];
            record.Cluster = cluster;
            record.Endpoint = endpoint;

            // 3. Forward, streaming both bodies.
            var error = await forwarder.SendAsync(context, endpoint.DestinationPrefix, transport.Inbound,
                UpstreamTransport.ConfigFor(cluster.Protocol), MeshRequestTransformer.Inbound);

            // 4. Failures become a response flag, a log line and, if nothing was sent yet, a clear answer.
            if (error != ForwarderError.None)
            {
                var failure = UpstreamFailure.Of(context, error);
                record.Flags |= failure.Flags;
                await failure.RespondAsync(context, cluster, endpoint, Direction, logger);
            }
        }
        finally
        {
            // T2. Telemetry (reporter=destination): metrics, access log line, span end.
            telemetry.Finish(context, snapshot, ref record, outbound: false);
        }
    }
}
