namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// An HTTP/1.1 request was about to be written on a connection the upstream had already closed: nothing of
/// it was written, and the connection refuses every later write too. The request provably never reached
/// the upstream, so it may be sent again on another connection whatever its method (see
/// <see cref="UpstreamConnector"/>). An IOException, so that the handler and the forwarder pass it on as the
/// cause of the request's failure.
/// </summary>
internal sealed class UnsentRequestException()
    : IOException("the upstream had closed this connection before the request was written; nothing was sent");
