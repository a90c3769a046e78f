using MeshProxy.Metrics;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Admin;

/// <summary>
/// Port 15020, reachable by the kubelet and Prometheus: readiness, liveness and metrics. Nothing here
/// changes the proxy's state.
/// </summary>
/// <remarks><paramref name="beforeScrape"/> brings metrics that cannot be callbacks (per-cluster ones) up to date;
/// <paramref name="appProbes"/> answers the app's own kubelet probes, when the injector rewrote them here.</remarks>
internal sealed class StatsEndpoints(ISidecarControl lifecycle, MetricsRegistry metrics, Action beforeScrape, AppProbes? appProbes)
{
    public Task HandleAsync(HttpContext context)
    {
        var response = context.Response;
        response.ContentType = "text/plain; charset=utf-8";
        var path = context.Request.Path.Value;
        if (appProbes is not null && path?.StartsWith(AppProbes.PathPrefix, StringComparison.Ordinal) == true && HttpMethods.IsGet(context.Request.Method))
        {
            return appProbes.HandleAsync(context);
        }

        switch (path)
        {
            case "/ready" or "/healthz/ready":
                var notReady = lifecycle.NotReadyReason;
                response.StatusCode = notReady is null ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
                return response.WriteAsync((notReady ?? "ready") + "\n");
            case "/live" or "/healthz/live":
                return response.WriteAsync("live\n");

            // /stats/prometheus is the path Istio's sidecars serve; dashboards and scrape configs written for Istio keep working.
            // The format follows Accept: OpenMetrics (with exemplars) for Prometheus, the text format otherwise.
            case "/metrics" or "/stats/prometheus" when HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method):
                beforeScrape();
                return metrics.ServeAsync(context);
            default:
                response.StatusCode = StatusCodes.Status404NotFound;
                return response.WriteAsync("not found: try /ready, /live, /metrics\n");
        }
    }
}
