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

    private ListenerServer(string name, KestrelServer server, IPEndPoint boundEndPoint)
    {
        Name = name;
        _server = server;
        BoundEndPoint = boundEndPoint;
    }

    public string Name { get; }

    public IPEndPoint BoundEndPoint { get; }

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
        var detection = acceptHttp2 ? new CleartextProtocolDetection() : null;
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

        var transport = new SocketTransportFactory(Options.Create(new SocketTransportOptions()), loggerFactory);
        var server = new KestrelServer(Options.Create(options), transport, loggerFactory);
        await server.StartAsync(new PipelineApplication(pipeline), cancellationToken);
        File.Delete(http2SocketPath); // bound and unreachable: only the detection hands it connections

        var address = server.Features.Get<IServerAddressesFeature>()!.Addresses.First(a => a.StartsWith("http://", StringComparison.Ordinal) && !a.Contains("unix:", StringComparison.Ordinal));
        var bound = new IPEndPoint(endPoint.Address, new Uri(address).Port);
        return new ListenerServer(name, server, bound);
    }

    /// <summary>Stops accepting, lets requests in flight finish until the token fires, then aborts the rest.</summary>
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
    private sealed class PipelineApplication(RequestDelegate pipeline) : IHttpApplication<PipelineApplication.Context>
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
            contextFeatures.Set(context.Timing);
            return context;
        }

        public Task ProcessRequestAsync(Context context) => pipeline(context.Http);

        public void DisposeContext(Context context, Exception? exception) => context.Http.Uninitialize();

        /// <summary>What lives as long as Kestrel's per-connection (or per-stream) request state.</summary>
        internal sealed class Context(DefaultHttpContext http)
        {
            public DefaultHttpContext Http { get; } = http;

            public UpstreamTiming Timing { get; } = new();
        }
    }
}
