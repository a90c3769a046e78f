using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>A cluster's live resilience state as /config_dump shows it: endpoint health and ejections, breaker and retry counters.</summary>
internal static class ResilienceDump
{
    /// <param name="now">Milliseconds on the data path's clock (<see cref="ResilienceClock.Milliseconds(TimeProvider)"/>).</param>
    public static ResilienceState Of(Cluster cluster, long now)
    {
        var state = cluster.State;
        var stats = state.Stats;
        return new ResilienceState(
            cluster.Policy.LoadBalancer.ToString(),
            state.ActiveRequests,
            state.ActiveRetries,
            state.OpenConnections,
            state.Serving.Waiting,
            stats.Retries,
            stats.RetriesExhausted,
            stats.RetryOverflow,
            stats.Overflow,
            stats.Timeouts,
            stats.Ejections,
            cluster.Policy.OutlierDetection is { } od
                ? new OutlierDumpState(od.Consecutive5xx, od.ConsecutiveGatewayErrors, od.ConsecutiveLocalOriginFailures, od.SplitExternalLocalOriginErrors, od.IsDefault)
                : null,
            cluster.Endpoints.Select(e => new ResilienceEndpointState(
                e.Key,
                e.Health.IsEjected(now),
                Math.Max(0, e.Health.EjectedUntilMs - now),
                e.Health.Ejections,
                e.Health.Connections,
                e.Health.Active,
                Math.Round(e.Health.EwmaMilliseconds, 3))));
    }
}

/// <summary>One cluster's resilience state at one moment; written by /config_dump's source-generated serializer.</summary>
internal sealed record ResilienceState(
    string LoadBalancer,
    int ActiveRequests,
    int ActiveRetries,
    int OpenConnections,
    int PendingRequests,
    long Retries,
    long RetriesExhausted,
    long RetryOverflow,
    long Overflow,
    long Timeouts,
    long EjectionsTotal,
    OutlierDumpState? OutlierDetection,
    IEnumerable<ResilienceEndpointState> Endpoints);

/// <summary>
/// The thresholds in effect (null: off), so that an operator sees what was made of the config: in
/// particular that consecutiveLocalOriginFailures is unused (null) unless local-origin errors are split.
/// </summary>
/// <param name="Default">The default detector (no outlierDetection written): connect failures only, clusters of two endpoints or more.</param>
internal sealed record OutlierDumpState(int? Consecutive5xxErrors, int? ConsecutiveGatewayErrors, int? ConsecutiveLocalOriginFailures, bool SplitExternalLocalOriginErrors, bool Default);

internal sealed record ResilienceEndpointState(string Endpoint, bool Ejected, long EjectedForMs, long Ejections, int Connections, int ActiveRequests, double EwmaMs);
