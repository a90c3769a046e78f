using System.Net.Http;
using System.Net.Sockets;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// What a forwarding error means for the caller: the status to answer with, the flag to record, a short
/// reason (the most telling exception's type and message, no stack trace), and the exception itself for
/// the Debug line. <paramref name="CallersFault"/>: the caller's own bytes are known to be the cause.
/// </summary>
internal readonly record struct UpstreamFailure(ResponseFlags Flags, int StatusCode, string Reason, Exception? Exception = null, bool CallersFault = false)
{
    public static UpstreamFailure Classify(ForwarderError error, Exception? exception) => Build(error, exception) with { Exception = exception };

    private static UpstreamFailure Build(ForwarderError error, Exception? exception) => error switch
    {
        // Before or after the response began: the upstream's framing was refused, which is its fault, not a reset.
        ForwarderError.Request or ForwarderError.ResponseHeaders or ForwarderError.ResponseBodyDestination
            when Find<UpstreamProtocolException>(exception) is { } refused =>
            new(ResponseFlags.UpstreamProtocolError, 502, "upstream protocol error: " + refused.Message),
        ForwarderError.Request when Find<OwnFailureException>(exception) is { } own =>
            new(ResponseFlags.SidecarNotReady, 503, "sidecar could not send: " + own.Message),
        ForwarderError.Request when Find<UpstreamPeerRefusedException>(exception) is { } refused =>
            new(ResponseFlags.UpstreamPeerIdentity, 503, "upstream identity refused: " + refused.Message),
        ForwarderError.Request when IsConnectFailure(exception) =>
            new(ResponseFlags.UpstreamConnectionFailure, 503, "upstream connect error: " + Describe(exception)),
        ForwarderError.Request or ForwarderError.ResponseHeaders =>
            new(ResponseFlags.UpstreamConnectionTermination, 503, "upstream reset before response headers: " + Describe(exception)),
        ForwarderError.RequestTimedOut =>
            new(ResponseFlags.UpstreamRequestTimeout, 504, "upstream request timeout"),
        ForwarderError.RequestCreation =>
            new(ResponseFlags.DownstreamProtocolError, 400, "request cannot be forwarded as sent: " + Describe(exception)),
        ForwarderError.UpgradeActivityTimeout =>
            new(ResponseFlags.StreamIdleTimeout, 0, "upgraded stream idle timeout"),
        ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.RequestBodyClient or
        ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient or ForwarderError.UpgradeRequestCanceled or
        ForwarderError.UpgradeRequestClient or ForwarderError.UpgradeResponseCanceled or ForwarderError.UpgradeResponseClient =>
            new(ResponseFlags.DownstreamConnectionTermination, 0, "downstream went away: " + Describe(exception)),
        _ =>
            new(ResponseFlags.UpstreamConnectionTermination, 502, "upstream connection ended early: " + Describe(exception)),
    };

    /// <summary>What the forwarder's error on this request means.</summary>
    public static UpstreamFailure Of(HttpContext context, ForwarderError error)
    {
        var exception = context.Features.Find<IForwarderErrorFeature>()?.Exception;
        var failure = Classify(error, exception);

        // A send that failed without a connect error, for a request the upstream client can never send: the
        // caller's bytes are the cause, not the upstream (Telemetry/UnsendableRequest.cs).
        return error == ForwarderError.Request && failure.Flags == ResponseFlags.UpstreamConnectionTermination &&
               UnsendableRequest.FindHeader(context.Request) is { } header
            ? new(ResponseFlags.DownstreamProtocolError, 400, UnsendableRequest.Reason(header), exception, CallersFault: true)
            : failure;
    }

    /// <summary>Logs the failure with its flag and, if nothing was sent yet, answers the caller clearly.</summary>
    public Task RespondAsync(HttpContext context, Cluster cluster, UpstreamEndpoint endpoint, string direction, ILogger logger) =>
        RespondAsync(context, cluster.Name, endpoint.ToString(), direction, logger);

    /// <inheritdoc cref="RespondAsync(HttpContext, Cluster, UpstreamEndpoint, string, ILogger)"/>
    public Task RespondAsync(HttpContext context, string cluster, string endpoint, string direction, ILogger logger)
    {
        if (CallersFault)
        {
            // The caller's own bytes: at Debug, so that a client cannot turn bad requests into warning lines
            // (the access log and istio_requests_total{response_flags="DPE"} record every one). A request
            // YARP could not build for another reason stays a warning: that cause is not known to be the caller.
            logger.DownstreamRefused(Flags.ToCode(), direction, context.Request.Method, cluster, Reason);
        }
        else if ((Flags & ResponseFlags.DownstreamConnectionTermination) != 0)
        {
            // The caller went away: one Debug line; the count and one summary line per interval are
            // Telemetry/AbortedRequests.cs's (a client decides how often this happens).
            logger.DownstreamAborted(Flags.ToCode(), direction, context.Request.Method, cluster, endpoint, Reason);
        }
        else
        {
            logger.UpstreamFailed(Flags.ToCode(), direction, context.Request.Method, cluster, endpoint, Reason);
            if (Exception is not null)
            {
                // The stack trace, for whoever turns Debug on; the line above says what happened.
                logger.UpstreamFailureDetail(Flags.ToCode(), direction, endpoint, Exception);
            }
        }

        return StatusCode == 0
            ? Task.CompletedTask
            : LocalReply.WriteAsync(context, StatusCode, Flags, Reason);
    }

    /// <summary>The first exception of type <typeparamref name="T"/> in the chain, outermost first.</summary>
    internal static T? Find<T>(Exception? exception)
        where T : Exception
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is T found)
            {
                return found;
            }
        }

        return null;
    }

    private static bool IsConnectFailure(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (IsConnectError(e))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>One exception of a chain that says the connection to the upstream was never made.</summary>
    internal static bool IsConnectError(Exception e) =>
        e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError } ||
        e is SocketException { SocketErrorCode: SocketError.ConnectionRefused or SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.TimedOut };

    /// <summary>
    /// The innermost exception, which names the cause (the outer ones are the handler's and YARP's
    /// wrappers), as "Type: message"; a socket error adds its code.
    /// </summary>
    internal static string Describe(Exception? exception)
    {
        var innermost = exception;
        while (innermost?.InnerException is not null)
        {
            innermost = innermost.InnerException;
        }

        return innermost switch
        {
            null => "unknown",
            SocketException socket => $"{nameof(SocketException)} ({socket.SocketErrorCode}): {socket.Message}",
            _ => $"{innermost.GetType().Name}: {innermost.Message}",
        };
    }
}
