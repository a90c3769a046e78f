using Grpc.Net.Client;

namespace MeshProxy.Sidecar.ControlPlaneClient;

/// <summary>
/// The grpc-dotnet channel for every call to the control plane (config stream and CSR): h2c by prior knowledge
/// for http://, the pinned <see cref="ControlPlaneTls"/> handler for https://, and HTTP/2 keepalive PINGs on both.
/// </summary>
internal static class ControlPlaneChannel
{
    /// <param name="clientCertificate">The SVID to present as the TLS client certificate (https:// only), or null.</param>
    public static GrpcChannel Create(Uri address, ControlPlaneTls? tls, ControlPlaneClientOptions options, MeshProxy.Identity.X509Svid? clientCertificate = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (address.Scheme == Uri.UriSchemeHttps && tls is not { IsTls: true })
        {
            throw new ArgumentException("an https:// control plane needs its TLS trust (controlPlane.caFile)", nameof(tls));
        }

        var handler = tls?.CreateHandler(clientCertificate) ?? new SocketsHttpHandler();
        handler.KeepAlivePingDelay = options.KeepAlivePingDelay;
        handler.KeepAlivePingTimeout = options.KeepAlivePingTimeout;
        // Always, not only while calls are open: the config stream sits idle for hours, which is exactly when a
        // control plane that vanished without a FIN must be noticed (the stream then fails and is re-opened).
        handler.KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always;
        handler.EnableMultipleHttp2Connections = true;
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = options.MaxReceiveMessageSize,
            MaxSendMessageSize = options.MaxSendMessageSize,
            // Not ThrowOperationCanceledOnCancellation: with it, a call that failed to start (refused handshake,
            // nothing listening) surfaces from the first write as a bare TaskCanceledException, losing the reason.
        });
    }
}
