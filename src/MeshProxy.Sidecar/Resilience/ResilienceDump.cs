using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>A cluster's live resilience state as /config_dump shows it: endpoint health and ejections, breaker and retry counters.</summary>
internal static class ResilienceDump
{
    public static object Of(Cluster cluster)
    {
        var now = Environment.TickCount64;
        var state = cluster.State;
        var stats = state.Stats;
        return new
        {
            loadBalancer = cluster.Policy.LoadBalancer.ToString(),
            activeRequests = state.ActiveRequests,
            activeRetries = state.ActiveRetries,
            openConnections = state.OpenConnections,
            pendingRequests = state.Serving.Waiting,
            retries = stats.Retries,
            retriesExhausted = stats.RetriesExhausted,
            retryOverflow = stats.RetryOverflow,
            overflow = stats.Overflow,
            timeouts = stats.Timeouts,
            ejectionsTotal = stats.Ejections,
            endpoints = cluster.Endpoints.Select(e => new
            {
                endpoint = e.Key,
                ejected = e.Health.IsEjected(now),
                ejectedForMs = Math.Max(0, e.Health.EjectedUntilMs - now),
                ejections = e.Health.Ejections,
                connections = e.Health.Connections,
                activeRequests = e.Health.Active,
                ewmaMs = Math.Round(e.Health.EwmaMilliseconds, 3),
            }),
        };
    }
}
