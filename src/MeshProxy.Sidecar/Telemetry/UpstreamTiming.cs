using System.Diagnostics;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// When the request went upstream and when the upstream's response headers came back: the access log's
/// <c>upstream_service_time</c>. The moments are only visible to the forwarder's transformers, which are
/// singletons handed nothing but the HttpContext, while the pipeline's <see cref="RequestRecord"/> is a
/// struct they cannot reach. So this rides as a request feature; it belongs to the HttpContext that
/// Kestrel reuses for every request of a connection (HTTP/1.1) or pooled stream (HTTP/2), is set and
/// reset by <c>Listeners/ListenerServer.cs</c> when each request begins, and so costs no allocation per request.
/// </summary>
internal sealed class UpstreamTiming
{
    private long _sent;
    private long _headers;

    public static UpstreamTiming? Of(HttpContext context) => context.Features.Find<UpstreamTiming>();

    /// <summary>Forgets the previous request's (or a dropped attempt's) times.</summary>
    public void Reset()
    {
        _sent = 0;
        _headers = 0;
    }

    /// <summary>An attempt's request is about to be sent; any earlier attempt's response no longer counts.</summary>
    public void RequestSent()
    {
        _sent = Stopwatch.GetTimestamp();
        _headers = 0;
    }

    /// <summary>The upstream's response status and headers have arrived (the forwarder is about to copy them).</summary>
    public void ResponseHeadersReceived()
    {
        if (_sent != 0)
        {
            _headers = Stopwatch.GetTimestamp();
        }
    }

    /// <summary>Milliseconds from sending to the response headers, or -1 when no upstream response arrived (a local reply).</summary>
    public double ServiceTimeMs => _headers == 0 ? -1 : Stopwatch.GetElapsedTime(_sent, _headers).TotalMilliseconds;
}
