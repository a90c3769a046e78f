using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Listeners;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Pipelines;

/// <summary>
/// The local app's requests to the mesh (listener 15001), top to bottom:
/// snapshot -> request id -> destination (captured address, else Host/:authority) -> route match
/// -> load balancing -> forward -> failures as response flags.
/// </summary>
internal sealed class OutboundPipeline(SnapshotStore store, IHttpForwarder forwarder, UpstreamTransport transport, ILogger<OutboundPipeline> logger)
{
    private const string Direction = "outbound";

    public async Task HandleAsync(HttpContext context)
    {
        // 1. One snapshot for the whole request, however many are swapped in meanwhile.
        var snapshot = store.Current;
        RequestIds.Ensure(context.Request);

        // 2. Destination: where the app really dialled (transparent capture), else the name it used.
        var virtualHost = ResolveDestination(context, snapshot);
        if (virtualHost is null)
        {
            var authority = context.Request.Headers.Host.ToString();
            logger.NoRoute(Direction, authority);
            await LocalReply.WriteAsync(context, StatusCodes.Status404NotFound, ResponseFlags.NoRoute,
                $"no route: '{authority}' is not a service this workload may call");
            return;
        }

        // 3. Route: the first matching rule of the service's HttpRoute, else the service itself.
        Cluster? cluster;
        if (virtualHost.Rules.Count == 0)
        {
            cluster = virtualHost.DefaultCluster;
        }
        else
        {
            cluster = virtualHost.Match(context.Request)?.PickCluster();
            if (cluster is null)
            {
                logger.NoRoute(Direction, virtualHost.ServiceFqdn + context.Request.Path);
                await LocalReply.WriteAsync(context, StatusCodes.Status404NotFound, ResponseFlags.NoRoute,
                    $"no route: no rule of service {virtualHost.ServiceName} matches {context.Request.Method} {context.Request.Path}");
                return;
            }
        }

        // 4. Load balancing.
        var endpoint = cluster.Picker.Pick();
        if (endpoint is null)
        {
            await LocalReply.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, ResponseFlags.NoHealthyUpstream,
                $"no healthy upstream for {cluster.Name}");
            return;
        }

        // 5. Forward, streaming both bodies; mTLS when the endpoint is a mesh sidecar (identity step, Forwarding/UpstreamTls.cs).
        var error = await forwarder.SendAsync(context, endpoint.DestinationPrefix, transport.OutboundFor(endpoint),
            UpstreamTransport.ConfigFor(cluster.Protocol), MeshRequestTransformer.Outbound);

        // 6. Failures become a response flag, a log line and, if nothing was sent yet, a clear answer.
        if (error != ForwarderError.None)
        {
            await UpstreamFailure.RespondAsync(context, error, cluster, endpoint, Direction, logger);
        }
    }

    private static VirtualHost? ResolveDestination(HttpContext context, SidecarSnapshot snapshot)
    {
        var services = snapshot.Services;
        var original = context.Features.Get<IConnectionItemsFeature>()?.Items is { } items &&
                       items.TryGetValue(typeof(OriginalDestinationFeature), out var o)
            ? ((OriginalDestinationFeature)o!).EndPoint
            : null;
        if (original is not null && services.TryResolve(original, out var byAddress))
        {
            return byAddress;
        }

        var impliedPort = original?.Port ?? (context.Request.IsHttps ? 443 : 80);
        return services.TryResolve(context.Request.Headers.Host.ToString(), impliedPort, out var byName) ? byName : null;
    }
}
