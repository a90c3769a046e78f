using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// One request's attempts: what may still be retried, until when, and on which body. Stored as a
/// feature of the request so that <see cref="AttemptTransformer"/> (a singleton) can find it.
/// </summary>
internal sealed class RequestAttempts
{
    public static readonly HttpRequestOptionsKey<Cluster> ClusterOption = new("meshproxy.cluster");

    public static readonly HttpRequestOptionsKey<UpstreamEndpoint> EndpointOption = new("meshproxy.endpoint");

    /// <summary>The flags of a retry that was due and refused: URX (retries or budget spent), UO (concurrent-retries limit).</summary>
    private const ResponseFlags RefusedRetry = ResponseFlags.UpstreamRetryLimitExceeded | ResponseFlags.UpstreamOverflow;

    private readonly HttpContext _context;
    private readonly ResilienceClock _clock;
    private readonly long _deadline; // the clock's timestamp; long.MaxValue: none
    private readonly bool _idempotent;
    private readonly bool _grpc;
    private readonly bool _hasGrpcDeadline;
    private bool _slotForNext;
    private int _unsentResends;

    public RequestAttempts(HttpContext context, Cluster cluster, RetryPolicy policy, TimeSpan? routeTimeout, ReplayableRequestBody? body, bool bodyTooLarge, ResilienceClock clock)
    {
        _context = context;
        _clock = clock;
        Cluster = cluster;
        Policy = policy;
        Body = body;
        BodyReplayable = !bodyTooLarge;
        var request = context.Request;
        _idempotent = IsIdempotent(request);
        _grpc = request.ContentType is { } ct && ct.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase);

        var timeout = routeTimeout;
        if (_grpc && GrpcTimeout.TryParse(request.Headers[GrpcTimeout.HeaderName].ToString(), out var grpcTimeout))
        {
            _hasGrpcDeadline = true;
            timeout = timeout is { } t && t < grpcTimeout ? t : grpcTimeout;
        }

        _deadline = timeout is { } d ? clock.Timestamp() + (long)(d.TotalSeconds * clock.Time.TimestampFrequency) : long.MaxValue;
    }

    public Cluster Cluster { get; }

    public RetryPolicy Policy { get; }

    public ReplayableRequestBody? Body { get; }

    /// <summary>False when the body was known too large to keep (Content-Length over 64 KiB).</summary>
    public bool BodyReplayable { get; }

    /// <summary>0 for the first try.</summary>
    public int Attempt { get; private set; }

    public UpstreamEndpoint? Endpoint { get; private set; }

    /// <summary>Cancels this attempt at the per-try timeout or the request's deadline, whichever is first; null when neither is set.</summary>
    public CancellationTokenSource? Timer { get; private set; }

    /// <summary>The response of this attempt was dropped because a retry follows.</summary>
    public bool Suppressed { get; private set; }

    /// <summary>The attempt in progress is a retry and holds one of the cluster's concurrent-retry slots.</summary>
    public bool HoldsRetrySlot { get; private set; }

    public int LastStatus { get; private set; }

    /// <summary>Flags this request earned on the way (URX when a retry was refused).</summary>
    public ResponseFlags Flags { get; set; }

    /// <summary>Whether the current attempt goes over mutual TLS: the only kind that carries peer metadata.</summary>
    public bool Mtls { get; set; }

    /// <summary>This sidecar's peer metadata header, sent on mTLS attempts.</summary>
    public string? PeerHeader { get; set; }

    /// <summary>The answering sidecar's metadata, read from the last response over mTLS.</summary>
    public PeerMetadata? Peer { get; set; }

    /// <summary>The SPIFFE ID the answering server proved, for the last response over mTLS; null on plaintext.</summary>
    public string? PeerPrincipal { get; set; }

    public bool HasDeadline => _deadline != long.MaxValue;

    public TimeSpan Remaining => _deadline == long.MaxValue
        ? Timeout.InfiniteTimeSpan
        : _clock.Time.GetElapsedTime(_clock.Timestamp(), _deadline);

    public bool DeadlinePassed => _deadline != long.MaxValue && _clock.Timestamp() >= _deadline;

    public static bool IsIdempotent(HttpRequest request)
    {
        var m = request.Method;
        return HttpMethods.IsGet(m) || HttpMethods.IsHead(m) || HttpMethods.IsOptions(m) || HttpMethods.IsTrace(m) ||
               HttpMethods.IsPut(m) || HttpMethods.IsDelete(m) ||
               request.Headers.ContainsKey("idempotency-key"); // the IETF draft header: the caller vouches for replay
    }

    /// <summary>Starts an attempt at <paramref name="endpoint"/>; false when the deadline has already passed.</summary>
    public bool Begin(UpstreamEndpoint endpoint)
    {
        Endpoint = endpoint;
        Suppressed = false;
        HoldsRetrySlot = _slotForNext;
        _slotForNext = false;
        var perTry = Policy.PerTryTimeout;
        if (perTry is null && !HasDeadline)
        {
            return true;
        }

        var remaining = Remaining;
        if (HasDeadline && remaining <= TimeSpan.Zero)
        {
            return false;
        }

        var limit = perTry is { } p && (!HasDeadline || p < remaining) ? p : remaining;
        if (Timer is null || !Timer.TryReset())
        {
            // A timer that fired cannot be reset (its token stays canceled for whoever still holds it).
            Timer?.Dispose();
            Timer = _clock.RentTimer();
        }

        Timer.CancelAfter(limit);
        return true;
    }

    /// <summary>The attempt is over: the retry slot it held, if any, is given back.</summary>
    public void End()
    {
        if (HoldsRetrySlot)
        {
            HoldsRetrySlot = false;
            Cluster.State.EndRetry();
        }
    }

    /// <summary>The request is over: any slot still reserved for a retry that will not happen is given back.</summary>
    public void Finish()
    {
        End();
        if (_slotForNext)
        {
            _slotForNext = false;
            Cluster.State.EndRetry();
        }

        DisposeTimer();
    }

    public void Next() => Attempt++;

    public void DisposeTimer()
    {
        if (Timer is { } timer)
        {
            Timer = null;
            _clock.ReturnTimer(timer);
        }
    }

    public void PrepareRequest(HttpRequestMessage request)
    {
        request.Options.Set(ClusterOption, Cluster);
        if (Endpoint is { } endpoint)
        {
            request.Options.Set(EndpointOption, endpoint);
        }
        if (_hasGrpcDeadline)
        {
            // The upstream must see the time that is really left, not what the caller granted at the start.
            request.Headers.Remove(GrpcTimeout.HeaderName);
            request.Headers.TryAddWithoutValidation(GrpcTimeout.HeaderName, GrpcTimeout.Format(Remaining));
        }
    }

    /// <summary>Response headers are in: false to drop them and retry, true to send this response to the caller.</summary>
    public bool OnResponse(HttpContext context, HttpResponseMessage response)
    {
        var status = (int)response.StatusCode;
        LastStatus = status;
        var grpcStatus = -1;
        if (_grpc && response.Headers.TryGetValues("grpc-status", out var values))
        {
            foreach (var v in values)
            {
                _ = int.TryParse(v, out grpcStatus);
            }
        }

        if (Policy.MatchesResponse(status, grpcStatus) && !context.Response.HasStarted)
        {
            // A response means the request arrived: only what may be replayed is retried.
            if (MayRetry(delivered: true))
            {
                if (TryReserveRetry())
                {
                    Suppressed = true;
                    return false;
                }
            }
            else if (Attempt > 0)
            {
                Flags |= ResponseFlags.UpstreamRetryLimitExceeded;
            }

            if ((Flags & RefusedRetry) != 0)
            {
                context.Response.Headers[LocalReply.FlagsHeader] = (Flags & RefusedRetry).ToCode();
            }
        }

        // Committed: the per-try timeout no longer applies; the request's deadline still does.
        Timer?.CancelAfter(HasDeadline ? Remaining : Timeout.InfiniteTimeSpan);
        return true;
    }

    /// <summary>
    /// How many times one request is sent again, for free, after dying unsent on a connection the upstream had
    /// closed (FailureKind.Unsent): enough for the few idle connections a closing upstream leaves in the pool
    /// (the handler drops each one it finds closed), and a bound if an upstream closes every connection at once.
    /// </summary>
    public const int MaxUnsentResends = 3;

    /// <summary>
    /// A request that provably never reached the upstream (FailureKind.Unsent) may be sent again whatever its
    /// method and whatever the retry policy, as SocketsHttpHandler itself resends a body-less request whose
    /// reused connection turns out closed: a few times, while the body can start over (none, or kept by
    /// <see cref="ReplayableRequestBody"/>), time is left and the caller is there. Not with
    /// <c>Expect: 100-continue</c>: there the body follows a read of the interim response, so its write may
    /// look like a request's first although the head went out before.
    /// </summary>
    public bool TryResendUnsent()
    {
        if (_unsentResends >= MaxUnsentResends ||
            (Body is null ? !BodyReplayable || ResilientForwarder.MayHaveBody(_context) : !Body.CanReplay) ||
            _context.Request.Headers.Expect.Count > 0 ||
            DeadlinePassed ||
            _context.RequestAborted.IsCancellationRequested)
        {
            return false;
        }

        _unsentResends++;
        return true;
    }

    /// <summary>Retries left, a replayable body, time left, and (unless it provably never arrived) a replayable request.</summary>
    public bool MayRetry(bool delivered) =>
        Attempt < Policy.MaxRetries &&
        (_idempotent || !delivered) &&
        BodyReplayable && (Body is null || Body.CanReplay) &&
        !DeadlinePassed &&
        !_context.RequestAborted.IsCancellationRequested;

    /// <summary>
    /// The concurrent-retries limit, then (unless <paramref name="chargeBudget"/> is false) the budget; a refusal is counted and flagged UO. Envoy implements
    /// the budget as the cluster's retry circuit breaker, so a spent budget is an overflow (flag UO,
    /// upstream_rq_retry_overflow) like the limit, not URX, which says this request used up its own retries.
    /// </summary>
    /// <param name="chargeBudget">False for a retry of a request that provably never reached the upstream: it takes a concurrent-retry slot but no budget.</param>
    public bool TryReserveRetry(bool chargeBudget = true)
    {
        var state = Cluster.State;
        var policy = Cluster.Policy;
        if (HoldsRetrySlot)
        {
            // The retry being judged is over: its slot is given back before the next is asked for, as
            // Envoy does, so that a request's own retry never counts against its next one.
            HoldsRetrySlot = false;
            state.EndRetry();
        }

        if (!state.TryBeginRetry(policy.Limits.MaxRetries))
        {
            state.Stats.RetryOverflowed();
            Flags |= ResponseFlags.UpstreamOverflow;
            return false;
        }

        if (chargeBudget && !state.Budget.TryWithdraw(policy.Budget, state.ActiveRetries, _clock.NowMs()))
        {
            state.EndRetry();
            state.Stats.RetryExhausted();
            Flags |= ResponseFlags.UpstreamOverflow;
            return false;
        }

        _slotForNext = true;
        state.Stats.Retry();
        return true;
    }
}
