using System.Buffers;
using System.Net.Http;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Mirroring;

/// <summary>
/// Traffic shadowing (Istio's mirror, Gateway API's RequestMirror): a copy of a routed request sent to the rule's
/// mirror cluster, fire and forget. The outbound pipeline calls <see cref="Begin"/> before the primary send (the
/// percentage draw; the body tapped as the primary reads it) and <see cref="Send"/> after it (the copy leaves on the
/// thread pool, its answer read and discarded). The copy's Host is the request's with Envoy's "-shadow" suffix on the
/// host name. Nothing of the copy reaches the primary: not its status, not its time (own timeout, a cap on copies in
/// flight, a body only up to <see cref="MirrorOptions.BodyLimit"/> and only as the primary read it).
/// </summary>
internal sealed class RequestMirror(UpstreamTransport transport, MirrorOptions options, TimeProvider time, SidecarTelemetry telemetry, ILogger<RequestMirror> logger)
{
    private int _inFlight;

    /// <summary>
    /// Before the primary send: null when the request loses the draw or its declared body is over the limit (counted
    /// skipped_body); else the copy to send afterwards, with a body tap in place of Request.Body when there is a body.
    /// </summary>
    public MirrorCopy? Begin(HttpContext context, RouteMirror mirror)
    {
        if (!(options.Draw() < mirror.Percentage))
        {
            return null;
        }

        // Already at the cap: no copy will leave, so no body buffer is taken for it (Send reserves the slot for real).
        if (Volatile.Read(ref _inFlight) >= options.MaxConcurrent)
        {
            telemetry.Proxy.MirrorRequest(Results.SkippedConcurrency);
            return null;
        }

        var request = context.Request;
        var declared = request.ContentLength;
        if (declared > options.BodyLimit)
        {
            telemetry.Proxy.MirrorRequest(Results.SkippedBody);
            return null;
        }

        MirrorBodyTap? tap = null;
        if (context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? declared > 0)
        {
            tap = new MirrorBodyTap(request.Body, options.BodyLimit, declared);
            request.Body = tap;
        }

        return new MirrorCopy(mirror, tap);
    }

    /// <summary>After the primary send, while the request is still readable: the copy is built here and sent off; it never throws.</summary>
    public void Send(HttpContext context, MirrorCopy copy)
    {
        ReadOnlyMemory<byte> body = default;
        byte[]? rented = null;
        if (copy.Tap is { } tap && !tap.TryTake(out body, out rented))
        {
            telemetry.Proxy.MirrorRequest(Results.SkippedBody);
            return;
        }

        if (Interlocked.Increment(ref _inFlight) > options.MaxConcurrent)
        {
            Interlocked.Decrement(ref _inFlight);
            Return(rented);
            telemetry.Proxy.MirrorRequest(Results.SkippedConcurrency);
            return;
        }

        var cluster = copy.Mirror.Cluster;
        var message = Build(context.Request, cluster, copy.Tap is null ? null : body);

        // Off the request's execution context: the copy is not part of the caller's trace or its request, and its
        // first synchronous steps (endpoint choice, pool, connect) run on the thread pool, not on the primary's time.
        using (ExecutionContext.SuppressFlow())
        {
            _ = Task.Run(() => SendAsync(message, cluster, rented));
        }
    }

    private async Task SendAsync(HttpRequestMessage message, Cluster cluster, byte[]? rented)
    {
        var result = Results.Failed;
        try
        {
            var endpoint = cluster.Picker.Pick(HealthTime.Milliseconds(time));
            if (endpoint is null)
            {
                logger.MirrorFailed(cluster.Name, "the cluster has no endpoint");
                return;
            }

            message.RequestUri = new Uri(endpoint.DestinationPrefix + message.RequestUri!.OriginalString);
            message.Options.Set(RequestAttempts.ClusterOption, cluster);
            message.Options.Set(RequestAttempts.EndpointOption, endpoint);
            var pool = transport.Acquire(cluster);
            try
            {
                using var timeout = new CancellationTokenSource(options.Timeout, time);
                using var response = await transport.For(pool, endpoint).SendAsync(message, timeout.Token);

                // Read to the end (and dropped) so that the connection goes back to the pool instead of being closed.
                await using var content = await response.Content.ReadAsStreamAsync(timeout.Token);
                await content.CopyToAsync(Stream.Null, timeout.Token);
                result = Results.Mirrored;
            }
            finally
            {
                pool.Release();
            }
        }
        catch (Exception ex)
        {
            // Every failure of the copy ends here: it has no caller to answer, and the primary never waits on it.
            logger.MirrorFailed(cluster.Name, ex.Message);
        }
        finally
        {
            message.Dispose();
            Return(rented);
            Interlocked.Decrement(ref _inFlight);
            telemetry.Proxy.MirrorRequest(result);
        }
    }

    /// <summary>The copy: method, path and query, headers (hop-by-hop ones left out), the body read; Host with "-shadow".</summary>
    private static HttpRequestMessage Build(HttpRequest request, Cluster cluster, ReadOnlyMemory<byte>? body)
    {
        var message = new HttpRequestMessage(new HttpMethod(request.Method), new Uri(request.Path.ToUriComponent() + request.QueryString.ToUriComponent(), UriKind.Relative))
        {
            Version = cluster.Protocol.IsHttp2() ? System.Net.HttpVersion.Version20 : System.Net.HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        if (body is { } bytes)
        {
            message.Content = new ReadOnlyMemoryContent(bytes);
        }

        foreach (var (name, values) in request.Headers)
        {
            if (NotCopied.Contains(name))
            {
                continue;
            }

            if (!message.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values))
            {
                message.Content?.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
        }

        message.Headers.Host = ShadowHost(request.Host.Value ?? string.Empty);
        return message;
    }

    /// <summary>Envoy's shadow host: "-shadow" after the host name, before any port ("reviews:9080" -> "reviews-shadow:9080").</summary>
    internal static string ShadowHost(string host)
    {
        var colon = host.LastIndexOf(':');
        return colon > 0 && host.IndexOf(']', colon) < 0 && host.AsSpan(colon + 1).IndexOfAnyExceptInRange('0', '9') < 0
            ? string.Concat(host.AsSpan(0, colon), "-shadow", host.AsSpan(colon))
            : host + "-shadow";
    }

    private static void Return(byte[]? rented)
    {
        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    // Connection-specific headers (RFC 9110 7.6.1) and the ones the copy gets anew (Host, the body's length).
    private static readonly HashSet<string> NotCopied = new(StringComparer.OrdinalIgnoreCase)
    {
        "host", "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "content-length",
    };

    private static class Results
    {
        public const string Mirrored = "mirrored";
        public const string Failed = "failed";
        public const string SkippedConcurrency = "skipped_concurrency";
        public const string SkippedBody = "skipped_body";
    }
}

/// <summary>A request won the mirror draw: its rule's mirror and, when it has a body, the tap collecting it.</summary>
internal sealed class MirrorCopy(RouteMirror mirror, MirrorBodyTap? tap)
{
    public RouteMirror Mirror { get; } = mirror;

    public MirrorBodyTap? Tap { get; } = tap;
}
