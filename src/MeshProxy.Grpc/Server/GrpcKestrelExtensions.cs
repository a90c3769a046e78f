using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace MeshProxy.Grpc.Server;

public static class GrpcKestrelExtensions
{
    /// <summary>Default ping interval on an idle connection (Kestrel's own default is never).</summary>
    public static readonly TimeSpan DefaultKeepAlivePingDelay = TimeSpan.FromSeconds(30);

    /// <summary>Default wait for the PING ACK before the connection is closed as dead.</summary>
    public static readonly TimeSpan DefaultKeepAlivePingTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Makes Kestrel send HTTP/2 PINGs on connections that have been quiet for <paramref name="pingDelay"/>
    /// and close those whose peer does not answer within <paramref name="pingTimeout"/>, so that a
    /// sidecar that vanished without a FIN (node lost, network partition) is noticed and its
    /// long-lived streams end.
    /// </summary>
    public static KestrelServerOptions ConfigureGrpcKeepAlive(
        this KestrelServerOptions options,
        TimeSpan? pingDelay = null,
        TimeSpan? pingTimeout = null)
    {
        options.Limits.Http2.KeepAlivePingDelay = pingDelay ?? DefaultKeepAlivePingDelay;
        options.Limits.Http2.KeepAlivePingTimeout = pingTimeout ?? DefaultKeepAlivePingTimeout;
        return options;
    }
}
