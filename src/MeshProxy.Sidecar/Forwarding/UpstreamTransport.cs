using System.Net;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// The HTTP clients the forwarder sends with: one connection pool for the local app (inbound) and, outbound,
/// one <see cref="ClusterPool"/> per cluster, so that each destination's idle timeout and connection limit
/// (DestinationPolicy connectionPool) are its handler's own settings. Each pool has a plaintext handler and
/// one whose connections are all mutual TLS (<see cref="UpstreamTls"/>): an address:port is either a
/// sidecar or not, so the two never hold a connection to the same endpoint. Which cluster keeps which pool
/// across snapshots is decided by Runtime/RuntimeBuilder.cs: a cluster whose settings did not change keeps its
/// pool (and its warm connections), and a pool no longer used is retired there, closed once the requests still
/// using it are done. This class only makes pools (<see cref="IClusterPools"/>) and picks the handler per send.
/// </summary>
internal sealed class UpstreamTransport : IClusterPools, IDisposable
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
    private readonly UpstreamTls _upstreamTls;

    public UpstreamTransport(SidecarIdentity identity, UpstreamTls upstreamTls)
    {
        _identity = identity;
        _upstreamTls = upstreamTls;
        Inbound = new HttpMessageInvoker(CreateHandler(ClusterPolicy.Default.Pool));
        Shared = CreatePool(ClusterPolicy.Default.Pool);
    }

    public HttpMessageInvoker Inbound { get; }

    /// <summary>
    /// The pool of a cluster that has none of its own: one built outside a published snapshot (tests,
    /// benchmarks), or a request still running on a replaced snapshot after its cluster's pool was retired
    /// and drained. Never retired.
    /// </summary>
    public ClusterPool Shared { get; }

    /// <summary>The pool to send this cluster's request through, acquired: release it after the send.</summary>
    public ClusterPool Acquire(Cluster cluster) =>
        cluster.Pool is ClusterPool pool && pool.TryAcquire() ? pool : AcquireShared();

    /// <summary>
    /// The rule for originating mTLS: the sidecar has an identity, and the endpoint names the service account
    /// it runs as (which is what makes it a mesh sidecar; endpoints without one are outside the mesh and
    /// stay plaintext).
    /// </summary>
    public HttpMessageInvoker For(ClusterPool pool, UpstreamEndpoint endpoint) =>
        endpoint.Identity is not null && _identity.Enabled ? pool.Mtls : pool.Plaintext;

    public static ForwarderRequestConfig ConfigFor(AppProtocol protocol) => protocol.IsHttp2() ? Http2 : Http11;

    public void Dispose()
    {
        Inbound.Dispose();
        Shared.Retire();
    }

    private ClusterPool AcquireShared()
    {
        Shared.TryAcquire();
        return Shared;
    }

    /// <summary>A new pool with <paramref name="settings"/>, for the runtime builder to give a cluster (it retires it).</summary>
    public ClusterPool Create(PoolSettings settings) => CreatePool(settings);

    private ClusterPool CreatePool(PoolSettings settings)
    {
        // HTTP/2 connections cannot be told to stop taking streams, so the requests-per-connection limit
        // is kept on them by rotating per-endpoint handlers (HandlerGenerations); HTTP/1.1 attempts of the
        // same limit use the pool's own handlers and their counting stream.
        var generations = settings.MaxRequestsPerConnection == int.MaxValue
            ? null
            : new HandlerGenerations(settings.MaxRequestsPerConnection, mtls => new HttpMessageInvoker(CreateUpstreamHandler(settings, mtls)));
        return new ClusterPool(settings,
            new HttpMessageInvoker(CreateUpstreamHandler(settings, mtls: false)),
            new HttpMessageInvoker(CreateUpstreamHandler(settings, mtls: true)),
            generations);
    }

    private SocketsHttpHandler CreateUpstreamHandler(PoolSettings settings, bool mtls)
    {
        var handler = CreateHandler(settings);
        // The connect timeout and the cluster-wide connection limit are applied by the connector
        // (a handler's own limit is per endpoint), so the handler's own timeout is off.
        handler.ConnectCallback = mtls ? _upstreamTls.ConnectAsync : UpstreamConnector.ConnectAsync;
        handler.ConnectTimeout = Timeout.InfiniteTimeSpan;
        return handler;
    }

    private static SocketsHttpHandler CreateHandler(PoolSettings settings)
    {
        var handler = NewHandler(settings);
        var limit = settings.MaxRequestsPerConnection;
        var watch = settings.MaxConnections != int.MaxValue;
        if (limit != int.MaxValue || watch)
        {
            // Only clusters that need them pay for a stream layer: HTTP/1.1 connections of a cluster with
            // maxRequestsPerConnection get the counting stream; HTTP/2 connections of a cluster with
            // maxConnections get the stream that reads the server's stream limit for the serving gate.
            handler.PlaintextStreamFilter = (context, _) => ValueTask.FromResult(context.NegotiatedHttpVersion.Major switch
            {
                1 when limit != int.MaxValue => new RequestsPerConnection.LimitedStream(context.PlaintextStream, limit),
                2 when watch => ServerStreamLimit.Watch(context),
                _ => context.PlaintextStream,
            });
        }

        return handler;
    }

    private static SocketsHttpHandler NewHandler(PoolSettings settings) => new()
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
        ConnectTimeout = ClusterPolicy.DefaultConnectTimeout,
        PooledConnectionIdleTimeout = settings.IdleTimeout,
        // Per endpoint: with one endpoint, requests beyond maxConnections wait in the handler's queue
        // for a connection instead of each starting a connect the connector would hold back.
        MaxConnectionsPerServer = settings.MaxConnections,
        KeepAlivePingDelay = TimeSpan.FromSeconds(30),
        KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
        KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
    };
}

/// <summary>Makes a cluster's connection pool: the upstream-send layer's part of a snapshot's runtime state (Runtime/RuntimeBuilder.cs).</summary>
internal interface IClusterPools
{
    /// <summary>A pool with these settings, held by its maker until retired (<see cref="ClusterPool.Retire"/>).</summary>
    ClusterPool Create(PoolSettings settings);
}
