using System.Net;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Egress;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Listeners;
using MeshProxy.Sidecar.Mirroring;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Runtime;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Pipelines;

/// <summary>
/// The local app's requests to the mesh (listener 15001), top to bottom:
/// snapshot -> request id -> telemetry start -> [no configuration yet: held, else 503 SNR]
/// -> destination (captured address, else Host/:authority)
/// -> [not a mesh service: egress, decided by EgressPolicy]
/// -> route match -> [the rule's header changes and rewrite; a redirect answered here]
/// -> [mTLS destination and no certificate yet: held, else 503 SNR]
/// -> [the rule mirrors and the request wins the draw: its body tapped]
/// -> load balancing, retries, timeouts, circuit breaking, forwarding
/// -> [a copy to the mirror, fire and forget]
/// -> failures as response flags -> telemetry (reporter=source).
/// </summary>
internal sealed class OutboundPipeline(
    RuntimeStore runtimes, OutboundReadiness readiness, ResilientForwarder resilience, EgressForwarder egress, RequestMirror mirroring, SidecarTelemetry telemetry,
    ILogger<OutboundPipeline> logger)
{
    private const string Direction = "outbound";

    public async Task HandleAsync(HttpContext context)
    {
        // 1. One snapshot for the whole request, however many are swapped in meanwhile.
        var runtime = runtimes.Current;
        var snapshot = runtime.Snapshot;
        RequestIds.Ensure(context.Request);

        // T1. Telemetry: the clock starts; a sampled request gets a client span, continuing the app's trace.
        var record = telemetry.Start(context, runtime.Labels, outbound: true);
        try
        {
            // 1a. Control-plane mode before the first push: the provisional snapshot knows no service, so the
            //     request is held until the first configuration (Pipelines/OutboundReadiness.cs).
            if (snapshot.Provisional)
            {
                if (!await HoldAsync(context, static (r, _) => r.HasSnapshot, (Cluster?)null, "no configuration from the control plane yet"))
                {
                    record.Flags |= context.RequestAborted.IsCancellationRequested ? ResponseFlags.DownstreamConnectionTermination : ResponseFlags.SidecarNotReady;
                    return;
                }

                runtime = runtimes.Current;
                snapshot = runtime.Snapshot;
            }

            // 2. Destination: where the app really dialled (transparent capture), else the name it used.
            var original = OriginalDestination(context);
            var virtualHost = ResolveDestination(context, snapshot, original);
            if (virtualHost is null)
            {
                // 2e. Egress (Egress/README.md): not a mesh service, so outside the mesh. EgressPolicy
                //     decides on Host and port; allowed goes to the addresses the sidecar resolved for
                //     that name, denied is 403 NR.
                var outcome = await egress.ForwardAsync(context, snapshot.Egress, snapshot.Workload, original);
                record.Flags |= outcome.Flags;
                record.EgressAllowed = outcome.Allowed is not null;
                record.EgressPolicy = outcome.Allowed?.Policy;
                return;
            }

            record.Destination = virtualHost;

            // 3. Route: the first matching rule of the service's HttpRoute, else the service itself.
            Cluster? cluster;
            RouteRule? rule = null;
            if (virtualHost.Rules.Count == 0)
            {
                cluster = virtualHost.DefaultCluster;
            }
            else
            {
                rule = virtualHost.Match(context.Request);

                // 3b. The rule's header changes and rewrite (Routing/RouteFilters.cs); a redirect is answered here.
                if (rule?.Filters is { } filters && filters.Apply(context, rule, virtualHost.Port))
                {
                    record.RouteName = rule.Name;
                    return;
                }

                cluster = rule?.PickCluster();
                if (cluster is null)
                {
                    logger.NoRoute(Direction, virtualHost.ServiceFqdn + context.Request.Path);
                    record.Flags = ResponseFlags.NoRoute;
                    await LocalReply.WriteAsync(context, StatusCodes.Status404NotFound, ResponseFlags.NoRoute,
                        $"no route: no rule of service {virtualHost.ServiceName} matches {context.Request.Method} {context.Request.Path}");
                    return;
                }

                record.RouteName = rule!.Name;
            }

            record.Cluster = cluster;

            // 3a. An mTLS destination before this sidecar's first certificate: held until it arrives. The
            //     request has not touched the cluster's breakers, budget or outlier counters.
            if (!readiness.CanSendTo(cluster) &&
                !await HoldAsync(context, static (r, c) => r.CanSendTo(c!), cluster, "no certificate yet to originate mTLS"))
            {
                record.Flags |= context.RequestAborted.IsCancellationRequested ? ResponseFlags.DownstreamConnectionTermination : ResponseFlags.SidecarNotReady;
                return;
            }

            telemetry.MeterUpgrade(context, runtime.Labels, ref record, outbound: true);

            // 3c. Mirroring (Mirroring/RequestMirror.cs): a rule without a mirror costs this one null check. One that
            //     has one draws against its percentage and taps the body the primary send is about to read.
            var copy = rule?.Mirror is { } mirror ? mirroring.Begin(context, mirror) : null;

            // 4. Load balancing, attempts and forwarding: circuit breaking, an endpoint per attempt,
            //    timeouts, retries within the budget; failures answered with their response flag.
            var result = await resilience.ForwardAsync(context, cluster, rule, runtime.Labels.PeerHeader);

            // 4a. The copy leaves, whatever the primary's outcome; the primary's answer is already written.
            if (copy is not null)
            {
                mirroring.Send(context, copy);
            }

            record.Endpoint = result.Endpoint;
            record.Peer = result.Peer;
            record.PeerPrincipal = result.PeerPrincipal;
            record.Attempts = result.Attempts;
            record.Flags |= result.Flags;
        }
        finally
        {
            // T2. Telemetry (reporter=source): metrics, access log line, span end.
            telemetry.Finish(context, runtime.Labels, ref record, outbound: true);
        }
    }

    /// <summary>
    /// Holds the request until <paramref name="ready"/> (bounded by the hold); true to go on. False when
    /// the caller went away (nothing to answer) or the hold passed (answered 503 SNR here, with one log line).
    /// </summary>
    private async Task<bool> HoldAsync(HttpContext context, Func<OutboundReadiness, Cluster?, bool> ready, Cluster? cluster, string reason)
    {
        try
        {
            if (await readiness.WaitAsync(ready, cluster, context.RequestAborted))
            {
                return true;
            }
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return false;
        }

        var destination = cluster?.Name ?? context.Request.Host.ToString();
        logger.NotReady(Direction, context.Request.Method, destination, readiness.Hold.TotalSeconds, reason);
        await LocalReply.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, ResponseFlags.SidecarNotReady,
            $"sidecar not ready: {reason} (held {readiness.Hold.TotalSeconds}s); the request was not sent");
        return false;
    }

    /// <summary>Where the app really dialled, on a transparently captured connection (SO_ORIGINAL_DST); else null.</summary>
    private static IPEndPoint? OriginalDestination(HttpContext context) => context.Features.Find<OriginalDestinationFeature>()?.EndPoint;

    private static VirtualHost? ResolveDestination(HttpContext context, SidecarSnapshot snapshot, IPEndPoint? original)
    {
        var services = snapshot.Services;
        if (original is not null && services.TryResolve(original, out var byAddress))
        {
            return byAddress;
        }

        var impliedPort = original?.Port ?? (context.Request.IsHttps ? 443 : 80);
        return services.TryResolve(context.Request.Headers.Host.ToString(), impliedPort, out var byName) ? byName : null;
    }
}
