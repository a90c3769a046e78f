namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Counters of one cluster, kept by the attempt loop and admission (Resilience/ClusterState.cs holds them) for
/// telemetry to export (monotonic unless named as a gauge). Declared here, with their exporter, so that
/// telemetry reads them without depending on the layer that counts. Public properties so that the exporter
/// needs nothing else.
/// </summary>
internal sealed class ResilienceStats
{
    private long _retries;
    private long _retriesExhausted;
    private long _retryOverflow;
    private long _overflow;
    private long _ejections;
    private long _timeouts;
    private long _resentUnsent;

    /// <summary>Attempts after the first (Envoy's upstream_rq_retry).</summary>
    public long Retries => Volatile.Read(ref _retries);

    /// <summary>Failures returned because the retry budget was spent (upstream_rq_retry_limit_exceeded, URX).</summary>
    public long RetriesExhausted => Volatile.Read(ref _retriesExhausted);

    /// <summary>Retries refused by the concurrent-retries limit (upstream_rq_retry_overflow, UO).</summary>
    public long RetryOverflow => Volatile.Read(ref _retryOverflow);

    /// <summary>Requests refused by a circuit breaker (upstream_rq_pending_overflow, UO).</summary>
    public long Overflow => Volatile.Read(ref _overflow);

    /// <summary>Outlier ejections (outlier_detection.ejections_enforced_total).</summary>
    public long Ejections => Volatile.Read(ref _ejections);

    /// <summary>Requests answered 504 UT (upstream_rq_timeout), per-try or route timeout.</summary>
    public long Timeouts => Volatile.Read(ref _timeouts);

    /// <summary>Requests sent again because the upstream had closed their connection before a byte of them was written (not retries).</summary>
    public long ResentUnsent => Volatile.Read(ref _resentUnsent);

    internal void Retry() => Interlocked.Increment(ref _retries);

    internal void RetryExhausted() => Interlocked.Increment(ref _retriesExhausted);

    internal void RetryOverflowed() => Interlocked.Increment(ref _retryOverflow);

    internal void Overflowed() => Interlocked.Increment(ref _overflow);

    internal void Ejected() => Interlocked.Increment(ref _ejections);

    internal void TimedOut() => Interlocked.Increment(ref _timeouts);

    internal void Resent() => Interlocked.Increment(ref _resentUnsent);
}

/// <summary>
/// What holds a cluster's <see cref="ResilienceStats"/> (Resilience/ClusterState.cs, a routing cluster's live state):
/// the exporter finds them through this, as telemetry does not depend on the layer that counts.
/// </summary>
internal interface IClusterStats
{
    ResilienceStats Stats { get; }
}
