using System.Diagnostics;
using System.Net;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Admin;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Listeners;
using MeshProxy.Sidecar.Pipelines;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Hosting;

/// <summary>
/// Starts the four listeners and stops them in the order a pod's shutdown needs: readiness off and
/// inbound closed to new connections first (callers move elsewhere), the open connections of both proxy
/// listeners told to go (Connection: close, GOAWAY) for the drain period, during which outbound keeps
/// serving the app (its last calls still work); then inbound, outbound and everything else closed.
/// </summary>
internal sealed class SidecarLifecycle : IHostedService, IAsyncDisposable, ISidecarControl
{
    /// <summary>How long requests in flight get to finish once their listener stops accepting.</summary>
    private static readonly TimeSpan InFlightGrace = TimeSpan.FromSeconds(10);

    private readonly IServiceProvider _services;
    private readonly SnapshotStore _store;
    private readonly IConfigSource _source;
    private readonly OutboundPipeline _outbound;
    private readonly InboundPipeline _inbound;
    private readonly SidecarTelemetry _telemetry;
    private readonly ILoggerFactory _loggerFactory;
    private readonly IHostApplicationLifetime _application;
    private readonly ILogger _logger;
    private readonly ControlPlaneIdentity? _caIdentity;
    private readonly Lock _drainLock = new();
    private readonly CancellationTokenSource _skipDrain = new(); // /quitquitquit ends a drain period under way
    private Task? _inboundDrain;
    private ListenerServer? _inboundServer;
    private ListenerServer? _outboundServer;
    private ListenerServer? _adminServer;
    private ListenerServer? _statsServer;
    private volatile bool _ready;
    private volatile bool _quitRequested;

    public SidecarLifecycle(
        IServiceProvider services,
        SnapshotStore store,
        IConfigSource source,
        OutboundPipeline outbound,
        InboundPipeline inbound,
        SidecarTelemetry telemetry,
        ILoggerFactory loggerFactory,
        IHostApplicationLifetime application)
    {
        _services = services;
        _store = store;
        _source = source;
        _outbound = outbound;
        _inbound = inbound;
        _telemetry = telemetry;
        _loggerFactory = loggerFactory;
        _application = application;
        _logger = loggerFactory.CreateLogger<SidecarLifecycle>();
        _caIdentity = services.GetService<ControlPlaneIdentity>();
    }

    /// <summary>
    /// True once configuration is loaded, every listener is up and (control-plane CA mode) the first certificate is
    /// in; false from the first moment of shutdown.
    /// </summary>
    public bool IsReady => NotReadyReason is null;

    /// <summary>Why the sidecar is not ready (for /ready's body), or null when it is.</summary>
    public string? NotReadyReason =>
        IsDraining ? "draining"
        : !_ready ? "not ready: listeners starting or stopping"
        : !_store.HasSnapshot ? "not ready: waiting for the first configuration"
        : _caIdentity is { FirstCertificate.IsCompletedSuccessfully: false } ? "not ready: waiting for the first certificate from the control plane's CA"
        : null;

    public bool IsDraining => _inboundDrain is not null;

    public ListenerEndpoints Endpoints => new(
        _outboundServer?.BoundEndPoint, _inboundServer?.BoundEndPoint, _adminServer?.BoundEndPoint, _statsServer?.BoundEndPoint);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // Before the first listener makes a TLS context (Program.Main has done it already in a real process).
        if (MeshProxy.Identity.TlsKeyExchange.Restrict() is { } notLimited)
        {
            _logger.TlsGroupsNotLimited(notLimited);
        }

        _logger.GcSettingsResolved(GcSettings.Describe());
        if (GcSettings.HardLimitWithoutConcurrentGc())
        {
            _logger.GcHardLimitWithoutConcurrentGc();
        }

        var spec = _store.Current.Sidecar.Spec.Listeners;
        var time = _services.GetRequiredService<TimeProvider>();
        var admin = new AdminEndpoints(_store, this, _services.GetRequiredService<SidecarIdentity>(), time, _loggerFactory.CreateLogger<AdminEndpoints>());
        var meshState = new MeshStateMetrics(
            _telemetry.Registry, _services.GetRequiredService<SidecarIdentity>(), _store, time, _source is ControlPlaneClient.ControlPlaneSource,
            _services.GetService<ControlPlaneClient.ControlPlaneTls>());
        var stats = new StatsEndpoints(this, _telemetry.Registry, meshState.Refresh, _services.GetService<AppProbes>());

        // Admin is bound to loopback whatever the configuration says: it can drain and stop the proxy.
        _adminServer = await StartAsync("admin", new IPEndPoint(IPAddress.Loopback, spec.Admin), admin.HandleAsync, acceptHttp2: false, configure: null, cancellationToken);
        _statsServer = await StartAsync("stats", new IPEndPoint(IPAddress.Parse(spec.InboundAddress), spec.Stats), stats.HandleAsync, acceptHttp2: false, configure: null, cancellationToken);
        // Inbound is mTLS once the workload has an identity (Listeners/InboundTls.cs); plaintext otherwise (local development only).
        var identity = _services.GetRequiredService<SidecarIdentity>();
        var inboundTls = identity.Enabled
            ? new InboundTls(
                identity, _store, _services.GetRequiredService<PeerCertificateVerifier>(), _services.GetRequiredService<HandshakeRateLimit>(),
                _telemetry.Proxy, _services.GetRequiredService<Tcp.TcpProxy>(), _services.GetRequiredService<TimeProvider>(), _loggerFactory.CreateLogger<InboundTls>())
            : null;
        _inboundServer = await StartAsync("inbound", new IPEndPoint(IPAddress.Parse(spec.InboundAddress), spec.Inbound), _inbound.HandleAsync, acceptHttp2: true, listen =>
        {
            OriginalDestinationMiddleware.Install(listen);
            inboundTls?.Install(listen);
        }, cancellationToken);
        _outboundServer = await StartAsync("outbound", new IPEndPoint(IPAddress.Parse(spec.OutboundAddress), spec.Outbound), _outbound.HandleAsync, acceptHttp2: true, listen =>
        {
            OriginalDestinationMiddleware.Install(listen);
            _services.GetRequiredService<EgressConnections>().Install(listen); // TLS passthrough and CONNECT (Egress/README.md)
        }, cancellationToken);
        _source.StartWatching();
        _ready = true;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        _ready = false;
        var drainDuration = DrainDuration;
        _logger.Draining(drainDuration.TotalSeconds);

        // The app's connections get the notice too (Connection: close, GOAWAY), so that by the time the
        // outbound listener closes them its clients have moved to new ones, not raced a close.
        if (drainDuration > TimeSpan.Zero)
        {
            _outboundServer?.Drain?.Begin();
        }

        // Inbound: readiness off, new connections refused, the open ones noticed and, after the drain period,
        // closed. Outbound serves the app meanwhile, so that its last calls still work.
        await DrainInboundAsync();

        // A POST /drain long before the signal ended inbound's drain early; outbound still gets its period.
        var remaining = drainDuration - Stopwatch.GetElapsedTime(started);
        if (remaining > TimeSpan.Zero)
        {
            using var skip = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _skipDrain.Token);
            await Task.Delay(remaining, skip.Token).ContinueWith(_ => { }, TaskScheduler.Default);
        }

        await StopListenerAsync(_outboundServer);
        await StopListenerAsync(_statsServer);
        await StopListenerAsync(_adminServer);
        _logger.Stopped();
    }

    /// <summary>
    /// Readiness off and the inbound listener closed to new connections at once; the connections it has are
    /// told to go (Connection: close, GOAWAY) and closed at the end of the drain period, when requests still in
    /// flight get a grace period. Idempotent: POST /drain and shutdown share one drain.
    /// </summary>
    public Task DrainInboundAsync()
    {
        lock (_drainLock)
        {
            _ready = false;
            return _inboundDrain ??= DrainInboundCoreAsync(Stopwatch.GetTimestamp());
        }
    }

    /// <summary>/quitquitquit: stop now, skipping the drain period (batch jobs must be able to finish).</summary>
    public void RequestQuit()
    {
        _quitRequested = true;
        _skipDrain.Cancel();
        _application.StopApplication();
    }

    public async ValueTask DisposeAsync()
    {
        _skipDrain.Dispose();
        foreach (var server in new[] { _outboundServer, _inboundServer, _statsServer, _adminServer })
        {
            if (server is not null)
            {
                await server.DisposeAsync();
            }
        }
    }

    private TimeSpan DrainDuration => _quitRequested ? TimeSpan.Zero : _store.Current.Sidecar.Spec.DrainDuration;

    private async Task DrainInboundCoreAsync(long started)
    {
        if (_inboundServer is not { } inbound)
        {
            return;
        }

        // Noticed before unbound: a response from now on says Connection: close.
        inbound.Drain?.Begin();
        await inbound.StopAcceptingAsync();

        // Callers move away between requests (a new connection is refused, which they may retry
        // anywhere); an idle connection none of them used during the drain is closed at its end.
        var remaining = DrainDuration - Stopwatch.GetElapsedTime(started);
        if (remaining > TimeSpan.Zero)
        {
            await Task.Delay(remaining, _skipDrain.Token).ContinueWith(_ => { }, TaskScheduler.Default);
        }

        await StopListenerAsync(inbound);
    }

    private async Task<ListenerServer> StartAsync(
        string name, IPEndPoint endPoint, Microsoft.AspNetCore.Http.RequestDelegate pipeline,
        bool acceptHttp2, Action<Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions>? configure, CancellationToken cancellationToken)
    {
        void Configure(Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions listen)
        {
            _telemetry.Proxy.TrackConnections(listen, name); // outermost: sees each connection whole
            configure?.Invoke(listen);
        }

        var server = await ListenerServer.StartAsync(name, endPoint, pipeline, _services, _loggerFactory, Configure, acceptHttp2, cancellationToken);
        _logger.ListenerStarted(name, server.BoundEndPoint.ToString());
        return server;
    }

    private async Task StopListenerAsync(ListenerServer? server)
    {
        if (server is null)
        {
            return;
        }

        using var grace = new CancellationTokenSource(InFlightGrace);
        await server.StopAsync(grace.Token);
        if (grace.IsCancellationRequested && server == _inboundServer)
        {
            _logger.InboundAborted();
        }
    }
}
