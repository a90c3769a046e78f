using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// The drain notice of one listener: from <see cref="Begin"/> on, every HTTP/1.x response says
/// <c>Connection: close</c> (Kestrel then closes the connection after it) and every HTTP/2 connection is
/// sent GOAWAY (Kestrel's graceful close: streams already open finish, new ones go elsewhere). A client
/// learns this way, between two requests, that the connection is going; the listener closes what is left
/// later (SidecarLifecycle). Closing an idle keep-alive connection without notice races with a client that
/// is just then writing its next request on it; that request is lost, and the client cannot tell whether
/// it was processed.
/// </summary>
internal sealed class ListenerDrain
{
    // HTTP/2 connections open now, so that idle ones also get their GOAWAY when the drain begins. HTTP/1.x
    // connections need no list: an idle one has no response to carry the notice, and closing it would be the race.
    private readonly ConcurrentDictionary<ConnectionContext, byte> _http2 = new();
    private volatile bool _draining;

    public bool IsDraining => _draining;

    /// <summary>Wraps the HTTP/2 connection handler: each connection is listed for as long as it lives.</summary>
    public ConnectionDelegate TrackHttp2(ConnectionDelegate next) => async connection =>
    {
        _http2.TryAdd(connection, 0);
        try
        {
            await next(connection);
        }
        finally
        {
            _http2.TryRemove(connection, out _);
        }
    };

    /// <summary>From now on responses carry the notice; HTTP/2 connections open now are sent GOAWAY at once. Idempotent.</summary>
    public void Begin()
    {
        _draining = true;
        foreach (var connection in _http2.Keys)
        {
            connection.Features.Get<IConnectionLifetimeNotificationFeature>()?.RequestClose();
        }
    }

    /// <summary>Gives one request's connection the notice; called for every request while draining.</summary>
    public static void Notify(HttpContext context)
    {
        var request = context.Request;
        if (HttpProtocol.IsHttp2(request.Protocol))
        {
            // A connection opened after the drain began gets its GOAWAY with its first stream, which still
            // completes (Kestrel's graceful close lets open streams finish).
            context.Features.Get<IConnectionLifetimeNotificationFeature>()?.RequestClose();
        }
        else if (!HttpMethods.IsConnect(request.Method))
        {
            // Set as the response starts: whatever the pipeline did to the headers before (a retry clears them).
            context.Response.OnStarting(CloseAfterResponse, context.Response);
        }
    }

    private static Task CloseAfterResponse(object state)
    {
        var response = (HttpResponse)state;
        if (response.StatusCode != StatusCodes.Status101SwitchingProtocols)
        {
            // RFC 9112 9.6: the server closes after this response, and the client knows not to send another.
            response.Headers.Connection = "close";
        }

        return Task.CompletedTask;
    }
}
