namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>What one attempt at an endpoint came to, as outlier detection counts it.</summary>
internal enum AttemptResult
{
    /// <summary>A response below 500.</summary>
    Success,

    /// <summary>A 500, 501 or 505 and the like: the upstream answered, with an error.</summary>
    ServerError,

    /// <summary>502, 503 or 504 from the upstream.</summary>
    GatewayError,

    /// <summary>No response: reset, REFUSED_STREAM, per-try timeout (Envoy's local-origin failures, connect failures apart).</summary>
    LocalOriginFailure,

    /// <summary>The connection could not be made (refused, unreachable, connect timeout): a local-origin failure, and the only one the default detector counts.</summary>
    ConnectFailure,

    /// <summary>The attempt was cut short by the caller or by this proxy's choice; says nothing about the endpoint.</summary>
    Neutral,
}

/// <summary>
/// The live figures of one endpoint: requests in flight (least-request), latency (peak EWMA), and
/// outlier detection's counters and ejection. Kept across snapshot swaps for an endpoint with the same
/// address in the same cluster (see Resilience/ClusterState.cs).
/// </summary>
/// <remarks>
/// The EWMA is a heuristic: concurrent updates may lose one sample, which costs nothing worth a lock.
/// Time is milliseconds on the injected clock (the attempt loop's ResilienceClock), read once per decision
/// by the caller and passed in, so that a fake clock drives ejections and the EWMA's decay in tests.
/// </remarks>
internal sealed class EndpointHealth
{
    /// <summary>Finagle's and linkerd's decay window for peak EWMA.</summary>
    public const double DecayMilliseconds = 10_000;

    /// <summary>What an endpoint never measured is assumed to cost, so that new endpoints are tried but not flooded.</summary>
    public const double DefaultRttMilliseconds = 30;

    private int _active;
    private int _connections;
    private double _ewmaMs = DefaultRttMilliseconds;
    private const long NeverStamped = long.MinValue;

    private long _ewmaStampMs = NeverStamped; // set at the first look (see Latency): the record is made where no clock is at hand
    private int _consecutive5xx;
    private int _consecutiveGateway;
    private int _consecutiveLocal;
    private long _ejectedUntilMs;
    private long _lastEjectionEndMs;
    private int _ejectionMultiplier;
    private long _ejections;
    private string? _verifiedPrincipal;

    public int Active => Volatile.Read(ref _active);

    public double EwmaMilliseconds => Volatile.Read(ref _ewmaMs);

    public long EjectedUntilMs => Volatile.Read(ref _ejectedUntilMs);

    public int EjectionMultiplier => Volatile.Read(ref _ejectionMultiplier);

    /// <summary>How many times this endpoint was ejected, ever.</summary>
    public long Ejections => Volatile.Read(ref _ejections);

    public bool IsEjected(long nowMs) => nowMs < Volatile.Read(ref _ejectedUntilMs);

    /// <summary>Peak-EWMA cost: expected latency times the queue one more request would join.</summary>
    public double Cost(long nowMs) => Latency(nowMs) * (Volatile.Read(ref _active) + 1);

    /// <summary>
    /// Peak-EWMA cost for an endpoint that serves 1 / <paramref name="activePerWeight"/> times as many
    /// requests at once as the lightest of its cluster: the requests ahead count for that much less.
    /// </summary>
    public double Cost(long nowMs, double activePerWeight) => Latency(nowMs) * (Volatile.Read(ref _active) * activePerWeight + 1);

    private double Latency(long nowMs)
    {
        var ewma = Volatile.Read(ref _ewmaMs);
        var stamp = Volatile.Read(ref _ewmaStampMs);
        if (stamp == NeverStamped)
        {
            // The default's decay starts when the endpoint is first considered, which is as good as when
            // its record was made (the snapshot that brought it is picked from at once).
            Interlocked.CompareExchange(ref _ewmaStampMs, nowMs, NeverStamped);
            stamp = Volatile.Read(ref _ewmaStampMs);
        }

        var elapsed = nowMs - stamp;
        if (elapsed > 0 && Volatile.Read(ref _active) == 0)
        {
            // An idle endpoint's old peak fades, so one slow response does not banish it forever.
            ewma *= Math.Exp(-elapsed / DecayMilliseconds);
        }

        return ewma;
    }

    /// <summary>
    /// The SPIFFE ID this endpoint's server proved in the latest mTLS handshake (Forwarding/UpstreamTls),
    /// null before one. Kept here because this record, unlike the endpoint, outlives snapshots, as pooled
    /// connections do; a request over mTLS reports it as destination_principal (reporter=source). One
    /// workload presents one identity, so the latest handshake speaks for every pooled connection.
    /// </summary>
    public string? VerifiedPrincipal
    {
        get => Volatile.Read(ref _verifiedPrincipal);
        set => Volatile.Write(ref _verifiedPrincipal, value);
    }

    /// <summary>Open upstream connections to this endpoint (counted by the connector).</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Counts the endpoint's first connection; false when it already has one.</summary>
    public bool TryOpenFirstConnection() => Interlocked.CompareExchange(ref _connections, 1, 0) == 0;

    public void OpenConnection() => Interlocked.Increment(ref _connections);

    public void CloseConnection() => Interlocked.Decrement(ref _connections);

    public void Begin() => Interlocked.Increment(ref _active);

    public void End() => Interlocked.Decrement(ref _active);

    public void ObserveLatency(double rttMs, long nowMs)
    {
        var previous = Volatile.Read(ref _ewmaMs);
        var stamp = Volatile.Read(ref _ewmaStampMs);
        var elapsed = stamp == NeverStamped ? 0 : Math.Max(0, nowMs - stamp);
        var next = rttMs > previous
            ? rttMs // peak: a slower response is believed at once
            : previous * Math.Exp(-elapsed / DecayMilliseconds) + rttMs * (1 - Math.Exp(-elapsed / DecayMilliseconds));
        Volatile.Write(ref _ewmaMs, next);
        Volatile.Write(ref _ewmaStampMs, nowMs);
    }

    /// <summary>
    /// Counts the result; true when a threshold was reached and the endpoint should be ejected (the
    /// caller checks the cluster's ejection cap and then calls <see cref="Eject"/>).
    /// </summary>
    /// <remarks>
    /// Local-origin failures follow Envoy's two modes. Unsplit (the default) they are what Envoy maps
    /// them to, a 503 (connect failure, reset) or 504 (timeout): gateway errors, counted by
    /// consecutive 5xx and consecutive gateway errors alike, and the local-origin counter is not kept.
    /// Split, they count toward consecutive local-origin failures only, and the 5xx and gateway
    /// counters see real upstream responses only. Any upstream response ends a run of local-origin
    /// failures; Envoy ends it when a connection is handed to the request, which here is only visible
    /// through the response (see Resilience/README.md).
    /// </remarks>
    public bool Record(AttemptResult result, OutlierPolicy policy)
    {
        var split = policy.SplitExternalLocalOriginErrors;
        switch (result)
        {
            case AttemptResult.Success:
                // Read before writing: on the success path the counters are already 0, and a write would
                // take the endpoint's cache line away from every other core on each response.
                Reset(ref _consecutive5xx);
                Reset(ref _consecutiveGateway);
                Reset(ref _consecutiveLocal);
                return false;
            case AttemptResult.ServerError:
                Volatile.Write(ref _consecutiveGateway, 0);
                Reset(ref _consecutiveLocal);
                return Reached(ref _consecutive5xx, policy.Consecutive5xx);
            case AttemptResult.GatewayError:
                Reset(ref _consecutiveLocal);
                return Gateway(policy);
            case AttemptResult.LocalOriginFailure when policy.IsDefault:
                // The default detector counts connect failures only: a reset or a timeout may be the app's
                // slowness or a drain, which an operator opts into judging by writing outlierDetection.
                return false;
            case AttemptResult.LocalOriginFailure or AttemptResult.ConnectFailure:
                return split ? Reached(ref _consecutiveLocal, policy.ConsecutiveLocalOriginFailures) : Gateway(policy);
            default:
                return false;
        }
    }

    /// <summary>A 502, 503 or 504: both the 5xx and the gateway run go on (no short-circuit: both must count).</summary>
    private bool Gateway(OutlierPolicy policy) =>
        Reached(ref _consecutive5xx, policy.Consecutive5xx) | Reached(ref _consecutiveGateway, policy.ConsecutiveGatewayErrors);

    private static void Reset(ref int counter)
    {
        if (Volatile.Read(ref counter) != 0)
        {
            Volatile.Write(ref counter, 0);
        }
    }

    /// <summary>
    /// Ejects for baseEjectionTime x the multiplier, which grows with each ejection and shrinks by one
    /// for every interval the endpoint has spent back in service since its last ejection.
    /// </summary>
    public bool Eject(OutlierPolicy policy, long nowMs)
    {
        lock (this)
        {
            if (IsEjected(nowMs))
            {
                return false;
            }

            var healthySince = _lastEjectionEndMs;
            var intervals = policy.Interval.TotalMilliseconds > 0 ? (int)Math.Min(int.MaxValue, (nowMs - healthySince) / policy.Interval.TotalMilliseconds) : 0;
            _ejectionMultiplier = Math.Max(0, _ejectionMultiplier - intervals) + 1;
            var duration = Math.Min(policy.BaseEjectionTime.TotalMilliseconds * _ejectionMultiplier, policy.MaxEjectionTime.TotalMilliseconds);
            _lastEjectionEndMs = nowMs + (long)duration;
            Volatile.Write(ref _ejectedUntilMs, _lastEjectionEndMs);
            Volatile.Write(ref _consecutive5xx, 0);
            Volatile.Write(ref _consecutiveGateway, 0);
            Volatile.Write(ref _consecutiveLocal, 0);
            Interlocked.Increment(ref _ejections);
            return true;
        }
    }

    private static bool Reached(ref int counter, int? threshold) =>
        Interlocked.Increment(ref counter) is var n && threshold is { } t && n >= t;
}
