using System.Net;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Abstractions;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// One listener = one Kestrel server running one pipeline. Separate servers (rather than one server
/// with four endpoints) let shutdown stop inbound first while outbound goes on serving, and keep each
/// pipeline free of "which port am I on" checks.
/// </summary>
internal sealed class ListenerServer : IAsyncDisposable
{
    private readonly KestrelServer _server;
    private readonly StoppableListeners _listeners;

    private ListenerServer(string name, KestrelServer server, StoppableListeners listeners, ListenerDrain? drain, IPEndPoint boundEndPoint)
    {
        Name = name;
        _server = server;
        _listeners = listeners;
        Drain = drain;
        BoundEndPoint = boundEndPoint;
    }

    public string Name { get; }

    public IPEndPoint BoundEndPoint { get; }

    /// <summary>The drain notice of a proxy listener (inbound, outbound); null for admin and stats.</summary>
    public ListenerDrain? Drain { get; }

    public static async Task<ListenerServer> StartAsync(
        string name,
        IPEndPoint endPoint,
        RequestDelegate pipeline,
        IServiceProvider services,
        ILoggerFactory loggerFactory,
        Action<ListenOptions>? configureListen,
        bool acceptHttp2,
        CancellationToken cancellationToken)
    {
        var options = new KestrelServerOptions { ApplicationServices = services, AddServerHeader = false };
        KestrelLimits.Apply(options);
        var drain = acceptHttp2 ? new ListenerDrain() : null;
        var detection = acceptHttp2 ? new CleartextProtocolDetection(drain) : null;
        options.Listen(endPoint, listen =>
        {
            listen.Protocols = HttpProtocols.Http1;
            configureListen?.Invoke(listen);
            detection?.ConfigurePublicEndpoint(listen);
        });
        var http2SocketPath = Path.Combine(Path.GetTempPath(), $"meshproxy-h2c-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        if (detection is not null)
        {
            options.ListenUnixSocket(http2SocketPath, detection.ConfigureHttp2Endpoint);
        }

        var kestrelLogs = new ScopelessLoggerFactory(loggerFactory);
        var transport = new StoppableListeners(new SocketTransportFactory(Options.Create(new SocketTransportOptions()), kestrelLogs));
        var server = new KestrelServer(Options.Create(options), transport, kestrelLogs);
        await server.StartAsync(new PipelineApplication(pipeline, drain), cancellationToken);
        File.Delete(http2SocketPath); // bound and unreachable: only the detection hands it connections

        var address = server.Features.Get<IServerAddressesFeature>()!.Addresses.First(a => a.StartsWith("http://", StringComparison.Ordinal) && !a.Contains("unix:", StringComparison.Ordinal));
        var bound = new IPEndPoint(endPoint.Address, new Uri(address).Port);
        return new ListenerServer(name, server, transport, drain, bound);
    }

    /// <summary>
    /// Closes the listening socket and nothing else: new connections are refused (a connect failure, which any
    /// client may retry elsewhere, whatever the request), the connections already open keep being served.
    /// </summary>
    public ValueTask StopAcceptingAsync() => _listeners.StopAcceptingAsync();

    /// <summary>Stops accepting, closes idle connections, lets requests in flight finish until the token fires, then aborts the rest.</summary>
    public Task StopAsync(CancellationToken cancellationToken) => _server.StopAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _server.StopAsync(new CancellationToken(canceled: true));
        _server.Dispose();
    }

    /// <summary>
    /// Runs a pipeline under Kestrel without the ASP.NET Core hosting layer: no middleware, no DI scope
    /// per request. The HttpContext is reused across requests on a connection (and on a pooled HTTP/2
    /// stream), as ASP.NET's own host does, and with it the request's <see cref="UpstreamTiming"/>.
    /// </summary>
    private sealed class PipelineApplication(RequestDelegate pipeline, ListenerDrain? drain) : IHttpApplication<PipelineApplication.Context>
    {
        public Context CreateContext(IFeatureCollection contextFeatures)
        {
            Context context;
            if (contextFeatures is IHostContextContainer<Context> container)
            {
                if (container.HostContext is { } reused)
                {
                    reused.Http.Initialize(contextFeatures);
                    context = reused;
                }
                else
                {
                    context = new Context(new DefaultHttpContext(contextFeatures));
                    container.HostContext = context;
                }
            }
            else
            {
                context = new Context(new DefaultHttpContext(contextFeatures));
            }

            // Kestrel clears extra features between requests but keeps their list, so setting this one
            // again costs no allocation after a connection's first request.
            context.Timing.Reset();
            contextFeatures.Put(context.Timing);
            return context;
        }

        public Task ProcessRequestAsync(Context context)
        {
            if (drain is { IsDraining: true })
            {
                ListenerDrain.Notify(context.Http);
            }

            return pipeline(context.Http);
        }

        public void DisposeContext(Context context, Exception? exception) => context.Http.Uninitialize();

        /// <summary>What lives as long as Kestrel's per-connection (or per-stream) request state.</summary>
        internal sealed class Context(DefaultHttpContext http)
        {
            public DefaultHttpContext Http { get; } = http;

            public UpstreamTiming Timing { get; } = new();
        }
    }

    /// <summary>
    /// Kestrel's transport, with a way to close the public listening socket alone. Kestrel's own StopAsync
    /// unbinds and closes every idle connection in one step; a drain needs the two apart (refuse new
    /// connections at once, give the open ones their notice first). Kestrel's accept loop ends quietly
    /// when its listener is unbound, and unbinding again at StopAsync is harmless.
    /// </summary>
    private sealed class StoppableListeners(SocketTransportFactory inner) : IConnectionListenerFactory, IConnectionListenerFactorySelector
    {
        private readonly List<IConnectionListener> _public = [];

        public async ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
        {
            var listener = await inner.BindAsync(endpoint, cancellationToken);
            if (endpoint is IPEndPoint)
            {
                // Only the TCP endpoint: the hidden HTTP/2 endpoint's Unix socket is never connected to.
                lock (_public)
                {
                    _public.Add(listener);
                }
            }

            return listener;
        }

        public bool CanBind(EndPoint endpoint) => inner.CanBind(endpoint);

        public async ValueTask StopAcceptingAsync()
        {
            IConnectionListener[] listeners;
            lock (_public)
            {
                listeners = [.. _public];
            }

            foreach (var listener in listeners)
            {
                await listener.UnbindAsync();
            }
        }
    }
}
