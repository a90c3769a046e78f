using System.Net;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Routing;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// The HTTP clients the forwarder sends with: one connection pool for the local app (inbound) and one
/// for everything else (outbound). A SocketsHttpHandler pools per scheme/host/port by itself, so one
/// handler per direction is enough and keeps connection reuse maximal. Mesh endpoints get a third handler
/// whose connections are all mutual TLS (<see cref="UpstreamTls"/>): an address:port is either a sidecar
/// or not, so the two outbound handlers never hold a connection to the same endpoint.
/// </summary>
internal sealed class UpstreamTransport : IDisposable
{
    /// <summary>Envoy's stream idle timeout default: a request or stream that moves no byte for 5 minutes is ended.</summary>
    public static readonly TimeSpan StreamIdleTimeout = TimeSpan.FromMinutes(5);

    /// <summary>HTTP/1.1 upstream; the forwarder upgrades WebSockets over it.</summary>
    public static readonly ForwarderRequestConfig Http11 = new()
    {
        Version = HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        ActivityTimeout = StreamIdleTimeout,
    };

    /// <summary>HTTP/2 with prior knowledge (h2c): gRPC needs HTTP/2 end to end for its trailers.</summary>
    public static readonly ForwarderRequestConfig Http2 = new()
    {
        Version = HttpVersion.Version20,
        VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        ActivityTimeout = StreamIdleTimeout,
    };

    private readonly SidecarIdentity _identity;

    public UpstreamTransport(SidecarIdentity identity, UpstreamTls upstreamTls)
    {
        _identity = identity;
        Inbound = new HttpMessageInvoker(CreateHandler());
        var outbound = CreateHandler();
        // Connect timeout and connection limit are per destination (DestinationPolicy), which one
        // handler's settings cannot be: the connector applies them, so the handler's own timeout is off.
        outbound.ConnectCallback = Resilience.UpstreamConnector.ConnectAsync;
        outbound.ConnectTimeout = Timeout.InfiniteTimeSpan;
        Outbound = new HttpMessageInvoker(outbound);
        var mtls = CreateHandler();
        mtls.ConnectCallback = upstreamTls.ConnectAsync;
        mtls.ConnectTimeout = Timeout.InfiniteTimeSpan;
        OutboundMtls = new HttpMessageInvoker(mtls);
    }

    public HttpMessageInvoker Inbound { get; }

    public HttpMessageInvoker Outbound { get; }

    /// <summary>Connections that are mutual TLS, made by <see cref="UpstreamTls"/>.</summary>
    public HttpMessageInvoker OutboundMtls { get; }

    /// <summary>
    /// The rule for originating mTLS: the sidecar has an identity, and the endpoint names the service account
    /// it runs as (which is what makes it a mesh sidecar; endpoints without one are outside the mesh and
    /// stay plaintext).
    /// </summary>
    public HttpMessageInvoker OutboundFor(UpstreamEndpoint endpoint) =>
        endpoint.Identity is not null && _identity.Enabled ? OutboundMtls : Outbound;

    public static ForwarderRequestConfig ConfigFor(AppProtocol protocol) => protocol.IsHttp2() ? Http2 : Http11;

    public void Dispose()
    {
        Inbound.Dispose();
        Outbound.Dispose();
        OutboundMtls.Dispose();
    }

    private static SocketsHttpHandler CreateHandler() => new()
    {
        // A proxy passes requests through as they are: no proxy of its own, no redirects followed,
        // no cookies kept, no bodies decompressed.
        UseProxy = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        // Trace context is propagated by the sidecar's telemetry, not by HttpClient's diagnostics.
        ActivityHeadersPropagator = null,
        EnableMultipleHttp2Connections = true,
        ConnectTimeout = TimeSpan.FromSeconds(10),
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(90),
        KeepAlivePingDelay = TimeSpan.FromSeconds(30),
        KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
        KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
    };
}
