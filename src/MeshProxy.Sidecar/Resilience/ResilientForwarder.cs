using System.Net.Http;
using System.Net.Sockets;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// Forwards one outbound request attempt by attempt: circuit breaker admission, then per attempt an
/// endpoint (another one on a retry), the per-try timeout, YARP's single send, and the decision to
/// retry — taken before anything reaches the caller — with backoff, budget and the safe-retry rules.
/// Each attempt goes out through <see cref="IUpstreamSender"/>; every wait and deadline runs on the
/// injected clock, so that tests drive the whole loop with a fake sender and a fake clock.
/// See Resilience/README.md.
/// </summary>
internal sealed class ResilientForwarder(IUpstreamSender sender, TimeProvider time, ILogger<ResilientForwarder> logger)
{
    private const string Direction = "outbound";
    private readonly ResilienceClock _clock = new(time);

    /// <param name="peerHeader">This sidecar's peer metadata (Telemetry/PeerMetadata.cs), sent on attempts over mTLS.</param>
    public async Task<ForwardResult> ForwardAsync(HttpContext context, Cluster cluster, RouteRule? rule, string? peerHeader = null)
    {
        var state = cluster.State;
        var policy = cluster.Policy;
        var limits = policy.Limits;
        var http2 = cluster.Protocol.IsHttp2();

        // Circuit breaker: on HTTP/1.1 too many requests in flight is refused at once (on HTTP/2 the
        // request limit is the stream capacity, and the pending queue below applies to it).
        if (!state.TryAdmit(http2 ? int.MaxValue : limits.MaxRequests))
        {
            return await OverflowAsync(context, cluster, "max requests", "concurrent requests");
        }

        var attempts = CreateAttempts(context, cluster, rule);
        attempts.PeerHeader = peerHeader;
        var gated = limits.Gated(http2);
        var serving = gated ? limits.Serving(http2, state.ServerStreams) : int.MaxValue;
        try
        {
            // A free slot is taken here, without the async wait's state machine or reading
            // context.RequestAborted (a feature lookup: callgrind counts thousands of instructions for one).
            if (gated && !state.Serving.TryEnter(serving) && await EnterAsync(context, cluster, attempts, serving) is { } refused)
            {
                gated = false;
                return refused;
            }

            state.Budget.Deposit(policy.Budget);
            // Restored as a feature, not by assigning Response.Body: that would wrap the body in a stream
            // feature that flushes headers early and breaks gRPC trailers-only responses.
            var originalResponseBody = context.Features.Find<IHttpResponseBodyFeature>()!;
            context.Features.Put(attempts);
            try
            {
                return await RunAsync(context, cluster, attempts, originalResponseBody);
            }
            finally
            {
                context.Features.Put<RequestAttempts>(null);
            }
        }
        finally
        {
            attempts.Finish();
            attempts.Body?.Dispose();
            if (gated)
            {
                state.Serving.Exit();
            }

            state.Release();
        }
    }

    /// <summary>
    /// Envoy's pending queue: with every connection (HTTP/1.1) or stream slot (HTTP/2) busy, the request
    /// waits for one, at most <c>http1MaxPendingRequests</c> of them at once; beyond that it is refused at
    /// once (503 UO). A wait is bounded by the route's deadline (504 UT) and by the connect timeout (503 UO:
    /// no connection came free in the time one could have been made). Null when a slot was obtained.
    /// </summary>
    private async ValueTask<ForwardResult?> EnterAsync(HttpContext context, Cluster cluster, RequestAttempts attempts, int serving)
    {
        var policy = cluster.Policy;
        var wait = policy.ConnectTimeout;
        var deadlineFirst = attempts.HasDeadline && attempts.Remaining < wait;
        if (deadlineFirst)
        {
            wait = attempts.Remaining > TimeSpan.Zero ? attempts.Remaining : TimeSpan.Zero;
        }

        var result = await cluster.State.Serving.EnterAsync(serving, policy.Limits.MaxPendingRequests, wait, _clock.Time, context.RequestAborted);
        switch (result)
        {
            case GateResult.Entered:
                return null;
            case GateResult.Canceled:
                return new ForwardResult(ResponseFlags.DownstreamConnectionTermination, null, 0);
            case GateResult.TimedOut when deadlineFirst:
                cluster.State.Stats.TimedOut();
                logger.UpstreamFailed(ResponseFlags.UpstreamRequestTimeout.ToCode(), Direction, context.Request.Method, cluster.Name, "-", "timed out pending for a connection");
                await LocalReply.WriteAsync(context, StatusCodes.Status504GatewayTimeout, ResponseFlags.UpstreamRequestTimeout, "upstream request timeout");
                return new ForwardResult(ResponseFlags.UpstreamRequestTimeout, null, 0);
            case GateResult.TimedOut:
                return await OverflowAsync(context, cluster, "pending timeout", "connections (no connection came free within the connect timeout)");
            default:
                return await OverflowAsync(context, cluster, "max pending requests", "pending requests");
        }
    }

    private async Task<ForwardResult> OverflowAsync(HttpContext context, Cluster cluster, string limit, string what)
    {
        cluster.State.Stats.Overflowed();
        logger.Overflow(context.Request.Method, cluster.Name, limit);
        await LocalReply.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, ResponseFlags.UpstreamOverflow,
            $"upstream overflow: {cluster.Name} is at its limit of {what}");
        return new ForwardResult(ResponseFlags.UpstreamOverflow, null, 0);
    }

    private async Task<ForwardResult> RunAsync(HttpContext context, Cluster cluster, RequestAttempts attempts, IHttpResponseBodyFeature originalResponseBody)
    {
        UpstreamEndpoint? previous = null;
        while (true)
        {
            // One reading of the clock for the pick (ejections, latency decay) and the attempt's latency.
            var started = _clock.Timestamp();
            var endpoint = cluster.Picker.Pick(_clock.Milliseconds(started), previous);
            if (endpoint is null)
            {
                await LocalReply.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, ResponseFlags.NoHealthyUpstream,
                    $"no healthy upstream for {cluster.Name}");
                return new ForwardResult(ResponseFlags.NoHealthyUpstream, null, attempts.Attempt);
            }

            if (!attempts.Begin(endpoint))
            {
                // The deadline passed during the backoff: this attempt was never sent.
                return await TimedOutAsync(context, cluster, endpoint, attempts, attempts.Attempt);
            }

            var health = endpoint.Health;
            health.Begin();
            ForwarderError error;
            try
            {
                error = await sender.SendAsync(context, cluster, endpoint, attempts, attempts.Timer?.Token ?? CancellationToken.None);
            }
            finally
            {
                health.End();
                attempts.End();
            }

            var ended = _clock.Timestamp();
            var now = _clock.Milliseconds(ended);
            var elapsedMs = _clock.Time.GetElapsedTime(started, ended).TotalMilliseconds;

            // A response (passed on, or dropped for a retry): the upstream answered.
            if (error == ForwarderError.None)
            {
                health.ObserveLatency(elapsedMs, now);
                var status = attempts.Suppressed ? attempts.LastStatus : context.Response.StatusCode;
                Outlier.Record(cluster, endpoint, ResultOf(status), now, logger);
                if (!attempts.Suppressed)
                {
                    return new ForwardResult(attempts.Flags, endpoint, attempts.Attempt + 1, attempts.Peer, attempts.PeerPrincipal);
                }

                logger.Retrying(context.Request.Method, cluster.Name, attempts.Attempt + 1, endpoint.Key, $"status {status}");
            }
            else
            {
                var exception = context.Features.Find<IForwarderErrorFeature>()?.Exception;
                var timedOut = attempts.Timer?.IsCancellationRequested == true && !context.RequestAborted.IsCancellationRequested;
                var kind = timedOut ? FailureKind.PerTryTimeout : Classify(error, exception);
                if (kind == FailureKind.Reset && error == ForwarderError.Request && UnsendableRequest.FindHeader(context.Request) is not null)
                {
                    // Never left this sidecar, and no endpoint could take it: no latency sample, no outlier
                    // count, no retry (and so nothing charged to the budget); answered 400 DPE below.
                    return await FailedAsync(context, cluster, endpoint, attempts, error, FailureKind.Downstream, timedOut: false);
                }

                if (kind == FailureKind.Unsent && !context.Response.HasStarted && attempts.TryResendUnsent())
                {
                    // Never sent: not this endpoint's failure (no outlier count, no latency sample), not a retry
                    // (no budget, no backoff, the same attempt). The handler has dropped the dead connection.
                    cluster.State.Stats.Resent();
                    logger.ResendingUnsent(context.Request.Method, cluster.Name, endpoint.Key);
                    PrepareNextTry(context, attempts, originalResponseBody);
                    continue;
                }

                health.ObserveLatency(elapsedMs, now);
                // This sidecar's own failures (Own) and the caller's are Neutral: only what the endpoint did counts.
                Outlier.Record(cluster, endpoint, kind switch
                {
                    FailureKind.ConnectFailure => AttemptResult.ConnectFailure,
                    FailureKind.RefusedStream or FailureKind.Reset or FailureKind.PerTryTimeout => AttemptResult.LocalOriginFailure,
                    _ => AttemptResult.Neutral,
                }, now, logger);

                var notDelivered = kind is FailureKind.ConnectFailure or FailureKind.RefusedStream or FailureKind.Unsent;
                var retry = !context.Response.HasStarted && attempts.Policy.MatchesFailure(kind);
                if (retry && !attempts.MayRetry(delivered: !notDelivered))
                {
                    retry = false;
                    if (attempts.Attempt > 0)
                    {
                        attempts.Flags |= ResponseFlags.UpstreamRetryLimitExceeded;
                    }
                }

                // A request that never reached the upstream adds no load to any upstream when sent again,
                // so its retry is not charged to the budget (the maxRetries limit still applies).
                if (!retry || !attempts.TryReserveRetry(chargeBudget: !notDelivered))
                {
                    return await FailedAsync(context, cluster, endpoint, attempts, error, kind, timedOut);
                }

                logger.Retrying(context.Request.Method, cluster.Name, attempts.Attempt + 1, endpoint.Key, kind.ToString());
            }

            // Retry: a clean response, the body from its start, another endpoint, after a jittered pause.
            PrepareNextTry(context, attempts, originalResponseBody);
            previous = endpoint;
            attempts.Next();
            var pause = RetryDecision.Backoff(attempts.Attempt - 1);
            if (attempts.HasDeadline && attempts.Remaining < pause)
            {
                pause = attempts.Remaining > TimeSpan.Zero ? attempts.Remaining : TimeSpan.Zero;
            }

            try
            {
                await Task.Delay(pause, _clock.Time, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                return new ForwardResult(ResponseFlags.DownstreamConnectionTermination, endpoint, attempts.Attempt);
            }
        }
    }

    /// <summary>A clean response and the body from its start, for the next try.</summary>
    private static void PrepareNextTry(HttpContext context, RequestAttempts attempts, IHttpResponseBodyFeature originalResponseBody)
    {
        context.Response.Clear();
        UpstreamTiming.Of(context)?.Reset(); // the dropped response is not the one the caller gets
        attempts.Peer = null;
        context.Features.Put(originalResponseBody);
        context.Features.Put<IForwarderErrorFeature>(null);
        attempts.Body?.Rewind();
    }

    private RequestAttempts CreateAttempts(HttpContext context, Cluster cluster, RouteRule? rule)
    {
        var policy = rule?.RetryPolicy ?? RetryPolicy.Default;
        var request = context.Request;
        ReplayableRequestBody? body = null;
        var tooLarge = false;
        if (policy.MaxRetries > 0 && MayHaveBody(context))
        {
            if (request.ContentLength > ReplayableRequestBody.Limit)
            {
                tooLarge = true;
            }
            else
            {
                body = new ReplayableRequestBody(request.Body);
                request.Body = body;
            }
        }

        return new RequestAttempts(context, cluster, policy, rule?.Timeout, body, tooLarge, _clock);
    }

    internal static bool MayHaveBody(HttpContext context)
    {
        var request = context.Request;
        if (request.ContentLength is { } length)
        {
            return length > 0;
        }

        // HTTP/1.x frames a body without Content-Length only as chunked (RFC 9112 6.3). A header check is
        // much cheaper than asking the feature collection, which is walked type by type (callgrind: a
        // GET's lookup here was most of what armed retries added per request).
        var protocol = request.Protocol;
        if (HttpProtocol.IsHttp11(protocol) || HttpProtocol.IsHttp10(protocol))
        {
            return request.Headers.TransferEncoding.Count > 0;
        }

        return context.Features.Find<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? true;
    }

    private static AttemptResult ResultOf(int status) => status switch
    {
        502 or 503 or 504 => AttemptResult.GatewayError,
        >= 500 => AttemptResult.ServerError,
        _ => AttemptResult.Success,
    };

    internal static FailureKind Classify(ForwarderError error, Exception? exception)
    {
        if (error is not (ForwarderError.Request or ForwarderError.ResponseHeaders or ForwarderError.RequestBodyDestination))
        {
            return FailureKind.Other;
        }

        if (UpstreamFailure.Find<OwnFailureException>(exception) is not null)
        {
            // Looked for first: the handler wraps it as a connection error, which would blame the endpoint.
            return FailureKind.Own;
        }

        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case UpstreamOverflowException:
                    return FailureKind.Overflow;
                case UnsentRequestException:
                    return FailureKind.Unsent;
                case HttpProtocolException { ErrorCode: 0x7 }: // HTTP/2 REFUSED_STREAM
                    return FailureKind.RefusedStream;
                case var connect when error == ForwarderError.Request && UpstreamFailure.IsConnectError(connect):
                    return FailureKind.ConnectFailure;
            }
        }

        return FailureKind.Reset;
    }

    private async Task<ForwardResult> FailedAsync(HttpContext context, Cluster cluster, UpstreamEndpoint endpoint, RequestAttempts attempts,
        ForwarderError error, FailureKind kind, bool timedOut)
    {
        if (timedOut)
        {
            return await TimedOutAsync(context, cluster, endpoint, attempts, attempts.Attempt + 1);
        }

        if (kind == FailureKind.Overflow)
        {
            cluster.State.Stats.Overflowed();
            logger.Overflow(context.Request.Method, cluster.Name, "max connections");
            await LocalReply.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, ResponseFlags.UpstreamOverflow | attempts.Flags,
                $"upstream overflow: {cluster.Name} is at its limit of connections");
            return new ForwardResult(ResponseFlags.UpstreamOverflow | attempts.Flags, endpoint, attempts.Attempt + 1);
        }

        // Failed after this attempt's response reached the caller (a WebSocket's 101, then the stream
        // ended badly): the upstream did answer, and the metric names who, as the stream's series does.
        // Before that, whatever a dropped earlier attempt said is not this response's peer. Read before
        // the local reply below starts a response of its own.
        var answered = context.Response.HasStarted;
        var failure = UpstreamFailure.Of(context, error);
        failure = failure with { Flags = failure.Flags | attempts.Flags };
        await failure.RespondAsync(context, cluster, endpoint, Direction, logger);
        return new ForwardResult(failure.Flags, endpoint, attempts.Attempt + 1,
            answered ? attempts.Peer : null, answered ? attempts.PeerPrincipal : null);
    }

    /// <param name="sent">Attempts that reached the wire, for ForwardResult.Attempts (the span's resend count).</param>
    private async Task<ForwardResult> TimedOutAsync(HttpContext context, Cluster cluster, UpstreamEndpoint endpoint, RequestAttempts attempts, int sent)
    {
        cluster.State.Stats.TimedOut();
        var flags = ResponseFlags.UpstreamRequestTimeout | attempts.Flags;
        var answered = context.Response.HasStarted; // a route timeout in the middle of the body: the upstream did answer
        logger.UpstreamFailed(flags.ToCode(), Direction, context.Request.Method, cluster.Name, endpoint.Key, "upstream request timeout");
        await LocalReply.WriteAsync(context, StatusCodes.Status504GatewayTimeout, flags, "upstream request timeout");
        return new ForwardResult(flags, endpoint, sent, answered ? attempts.Peer : null, answered ? attempts.PeerPrincipal : null);
    }
}

/// <summary>Outlier detection's bookkeeping after each attempt.</summary>
internal static class Outlier
{
    public static void Record(Cluster cluster, UpstreamEndpoint endpoint, AttemptResult result, long nowMs, ILogger logger)
    {
        if (cluster.Policy.OutlierDetection is not { } policy || result == AttemptResult.Neutral)
        {
            return;
        }

        if (policy.IsDefault && cluster.Endpoints.Count < 2)
        {
            // The default detector is for multi-endpoint services: ejecting a lone endpoint changes no pick
            // (panic mode tries it anyway) and would only log and count ejections.
            return;
        }

        if (!endpoint.Health.Record(result, policy))
        {
            return;
        }

        var endpoints = cluster.Endpoints;
        var ejected = 0;
        for (var i = 0; i < endpoints.Count; i++)
        {
            if (endpoints[i].Health.IsEjected(nowMs))
            {
                ejected++;
            }
        }

        if (ejected >= policy.MaxEjected(endpoints.Count) || !endpoint.Health.Eject(policy, nowMs))
        {
            return;
        }

        cluster.State.Stats.Ejected();
        logger.Ejected(endpoint.Key, cluster.Name, (endpoint.Health.EjectedUntilMs - nowMs) / 1000.0, endpoint.Health.EjectionMultiplier, result);
    }
}
