using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// The limits every listener enforces, chosen deliberately (README, "Limits"). Where Envoy has a
/// well-known default we take it, so that a workload moving to MeshProxy meets the same ceilings.
/// </summary>
internal static class KestrelLimits
{
    /// <summary>Envoy's max_request_headers_kb default: 60 KiB for all request headers together.</summary>
    public const int MaxRequestHeadersTotalSize = 60 * 1024;

    /// <summary>Envoy's max_headers_count default.</summary>
    public const int MaxRequestHeaderCount = 100;

    /// <summary>Twice Kestrel's default: long query strings are common in APIs, 16 KiB still bounds a slow-loris line.</summary>
    public const int MaxRequestLineSize = 16 * 1024;

    /// <summary>Concurrent streams per HTTP/2 connection (Kestrel's and most servers' 100).</summary>
    public const int MaxStreamsPerConnection = 100;

    /// <summary>How long a new connection may stay silent before we give up on it (as for request headers).</summary>
    public static readonly TimeSpan FirstBytesTimeout = TimeSpan.FromSeconds(30);

    public static void Apply(KestrelServerOptions options)
    {
        var limits = options.Limits;
        limits.MaxRequestHeadersTotalSize = MaxRequestHeadersTotalSize;
        limits.MaxRequestHeaderCount = MaxRequestHeaderCount;
        limits.MaxRequestLineSize = MaxRequestLineSize;

        // Bodies are streamed, never buffered whole, so the proxy imposes no size cap of its own.
        limits.MaxRequestBodySize = null;

        // A proxy must not kill a quiet gRPC stream or a slow consumer on a data-rate rule meant for
        // apps; idle streams are bounded by the forwarder's activity timeout instead.
        limits.MinRequestBodyDataRate = null;
        limits.MinResponseDataRate = null;

        limits.RequestHeadersTimeout = FirstBytesTimeout;
        limits.KeepAliveTimeout = TimeSpan.FromSeconds(130);
        limits.Http2.MaxStreamsPerConnection = MaxStreamsPerConnection;
        limits.Http2.MaxRequestHeaderFieldSize = 16 * 1024;
        limits.Http2.KeepAlivePingDelay = TimeSpan.FromSeconds(30);
        limits.Http2.KeepAlivePingTimeout = TimeSpan.FromSeconds(20);
    }
}
