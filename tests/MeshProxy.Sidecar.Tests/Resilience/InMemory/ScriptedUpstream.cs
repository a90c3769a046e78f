using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Time.Testing;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Tests.Resilience.InMemory;

/// <summary>One attempt as the scripted upstream saw it.</summary>
/// <param name="Number">0 for the first attempt the upstream saw, across all requests.</param>
/// <param name="AtMs">When it was sent, on the fake clock (milliseconds since the loop was made).</param>
internal sealed record Attempt(int Number, string Endpoint, string Method, string Path, string? GrpcTimeout, string Body, long AtMs);

/// <summary>What the scripted upstream does with one attempt.</summary>
internal abstract record Outcome
{
    /// <summary>A response with this status (and gRPC status, as a header: a trailers-only answer).</summary>
    public static Outcome Status(int status, string body = "", int? grpcStatus = null) => new Respond(status, body, grpcStatus);

    public static Outcome Ok { get; } = new Respond(200, "ok", null);

    /// <summary>The connection is refused: the request never left (flag UF).</summary>
    public static Outcome ConnectFailure { get; } = new Fail(ForwarderError.Request,
        new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused", new SocketException((int)SocketError.ConnectionRefused)), ReadsBody: false);

    /// <summary>The request arrived, then the connection died before any answer (flag UC).</summary>
    public static Outcome Reset { get; } = new Fail(ForwarderError.Request,
        new HttpRequestException(HttpRequestError.ResponseEnded, "The response ended prematurely.", new IOException("connection reset by peer")), ReadsBody: true);

    /// <summary>The pooled connection turned out closed before a byte of the request was written.</summary>
    public static Outcome Unsent { get; } = new Fail(ForwarderError.Request,
        new HttpRequestException(HttpRequestError.Unknown, "send failed", new UnsentRequestException()), ReadsBody: false);

    /// <summary>No answer until the attempt's timer or the caller gives up.</summary>
    public static Outcome Hang { get; } = new Wait(null, null);

    /// <summary>Answers <paramref name="then"/> after <paramref name="latency"/> of fake time.</summary>
    public static Outcome After(TimeSpan latency, Outcome then) => new Wait(latency, then);

    /// <summary>Answers <paramref name="then"/> once <paramref name="release"/> completes (or the attempt is given up).</summary>
    public static Outcome When(Task release, Outcome then) => new Held(release, then);

    internal sealed record Respond(int Code, string Body, int? GrpcStatus) : Outcome;

    internal sealed record Fail(ForwarderError Error, Exception Exception, bool ReadsBody) : Outcome;

    internal sealed record Wait(TimeSpan? Latency, Outcome? Then) : Outcome;

    internal sealed record Held(Task Release, Outcome Then) : Outcome;
}

/// <summary>
/// The fake upstream behind <see cref="IUpstreamSender"/>: each attempt gets the outcome its script says,
/// and is handled as YARP handles a real one — the request transform (<see cref="AttemptTransformer"/>,
/// which writes the grpc-timeout that is left), the request body read, the status set and the response
/// transform, where the attempt loop decides whether the response is kept or dropped for a retry.
/// </summary>
internal sealed class ScriptedUpstream(FakeTimeProvider time, Func<long> nowMs) : IUpstreamSender
{
    private readonly List<Attempt> _attempts = [];

    /// <summary>The outcome of each attempt; by default every attempt is answered 200.</summary>
    public Func<Attempt, Outcome> Script { get; set; } = _ => Outcome.Ok;

    public IReadOnlyList<Attempt> Attempts
    {
        get
        {
            lock (_attempts)
            {
                return [.. _attempts];
            }
        }
    }

    /// <summary>Attempts in progress (sent, not yet answered or given up).</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    private int _inFlight;

    public int Received(string endpoint) => Attempts.Count(a => a.Endpoint == endpoint);

    public int Received(int port) => Received($"127.0.0.1:{port}");

    public async ValueTask<ForwarderError> SendAsync(HttpContext context, Cluster cluster, UpstreamEndpoint endpoint, RequestAttempts attempts, CancellationToken cancellationToken)
    {
        attempts.Mtls = false;
        using var request = new HttpRequestMessage(new HttpMethod(context.Request.Method), endpoint.DestinationPrefix + context.Request.Path);
        await AttemptTransformer.Instance.TransformRequestAsync(context, request, endpoint.DestinationPrefix, cancellationToken);
        var grpcTimeout = request.Headers.TryGetValues("grpc-timeout", out var values) ? values.Single() : null;

        Attempt attempt;
        lock (_attempts)
        {
            attempt = new Attempt(_attempts.Count, endpoint.Key, context.Request.Method, context.Request.Path.Value ?? "/", grpcTimeout, "", nowMs());
            _attempts.Add(attempt);
        }

        var outcome = Script(attempt);
        Interlocked.Increment(ref _inFlight);
        try
        {
            return await HandleAsync(context, attempt, outcome, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private async Task<ForwarderError> HandleAsync(HttpContext context, Attempt attempt, Outcome outcome, CancellationToken cancellationToken)
    {
        switch (outcome)
        {
            case Outcome.Respond respond:
                await ReadBodyAsync(context, attempt);
                return await RespondAsync(context, respond, cancellationToken);
            case Outcome.Fail fail:
                if (fail.ReadsBody)
                {
                    await ReadBodyAsync(context, attempt);
                }

                return Failed(context, fail.Error, fail.Exception);
            case Outcome.Wait wait:
                using (var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, context.RequestAborted))
                {
                    try
                    {
                        await Task.Delay(wait.Latency ?? Timeout.InfiniteTimeSpan, time, either.Token);
                    }
                    catch (OperationCanceledException e)
                    {
                        return GivenUp(context, e);
                    }
                }

                return await HandleAsync(context, attempt, wait.Then!, cancellationToken);
            case Outcome.Held held:
                using (var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, context.RequestAborted))
                {
                    try
                    {
                        await held.Release.WaitAsync(either.Token);
                    }
                    catch (OperationCanceledException e)
                    {
                        return GivenUp(context, e);
                    }
                }

                return await HandleAsync(context, attempt, held.Then, cancellationToken);
            default:
                throw new InvalidOperationException(outcome.ToString());
        }
    }

    /// <summary>As YARP: the caller's departure is RequestCanceled, the attempt's own timer RequestTimedOut.</summary>
    private static ForwarderError GivenUp(HttpContext context, Exception e) =>
        Failed(context, context.RequestAborted.IsCancellationRequested ? ForwarderError.RequestCanceled : ForwarderError.RequestTimedOut, e);

    private static async Task<ForwarderError> RespondAsync(HttpContext context, Outcome.Respond respond, CancellationToken cancellationToken)
    {
        var body = Encoding.UTF8.GetBytes(respond.Body);
        using var response = new HttpResponseMessage((HttpStatusCode)respond.Code) { Content = new ByteArrayContent(body) };
        if (respond.GrpcStatus is { } grpcStatus)
        {
            response.Content.Headers.ContentType = new("application/grpc");
            response.Headers.TryAddWithoutValidation("grpc-status", grpcStatus.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        context.Response.StatusCode = respond.Code;
        if (!await AttemptTransformer.Instance.TransformResponseAsync(context, response, cancellationToken))
        {
            // Dropped for a retry: nothing reaches the caller.
            return ForwarderError.None;
        }

        await context.Response.Body.WriteAsync(body, cancellationToken);
        return ForwarderError.None;
    }

    private static ForwarderError Failed(HttpContext context, ForwarderError error, Exception exception)
    {
        context.Features.Set<IForwarderErrorFeature>(new ErrorFeature(error, exception));
        return error;
    }

    private async Task ReadBodyAsync(HttpContext context, Attempt attempt)
    {
        var body = await new StreamReader(context.Request.Body, Encoding.UTF8, leaveOpen: true).ReadToEndAsync();
        lock (_attempts)
        {
            _attempts[attempt.Number] = _attempts[attempt.Number] with { Body = body };
        }
    }

    private sealed class ErrorFeature(ForwarderError error, Exception exception) : IForwarderErrorFeature
    {
        public ForwarderError Error => error;

        public Exception? Exception => exception;
    }
}
