using System.Net;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Discovery;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Kubernetes.TrustDistribution;
using MeshProxy.ControlPlane.Kubernetes.Webhook;
using MeshProxy.ControlPlane.Monitoring;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Snapshots;
using Grpc.AspNetCore.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Hosting;

/// <summary>
/// The control plane: the watched directory, the discovery service on the gRPC port, the monitoring
/// port. The same code runs the process and the in-process tests. gRPC is grpc-dotnet: the services
/// derive from the generated bases and are bound with MapGrpcService, beside the standard
/// grpc.health.v1 service and server reflection.
/// </summary>
internal sealed class ControlPlaneHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ResourceDirectory? _directory;
    private readonly KubernetesSource? _kubernetes;
    private WebhookCertificatePublisher? _webhook;
    private readonly ControlPlaneTlsIdentity? _tls;
    private readonly DiscoveryService _discovery;
    private TrustBundlePublisher? _trustBundle;
    private volatile bool _ready;

    private ControlPlaneHost(WebApplication app, IConfigSource source, ResourceDirectory? directory, KubernetesSource? kubernetes, DiscoveryService discovery, ConnectionRegistry registry, ControlPlaneMetrics metrics, CertificateService? certificates, ControlPlaneTlsIdentity? tls)
    {
        Source = source;
        _kubernetes = kubernetes;
        _app = app;
        Certificates = certificates;
        _tls = tls;
        _discovery = discovery;
        _directory = directory;
        Registry = registry;
        Metrics = metrics;
    }

    /// <summary>The resource directory, when one is read.</summary>
    public ResourceDirectory? Directory => _directory;

    /// <summary>What is served: the directory, or the Kubernetes source (with the directory inside it, if any).</summary>
    public IConfigSource Source { get; }

    /// <summary>The Kubernetes source, when the control plane discovers from the API.</summary>
    public KubernetesSource? Kubernetes => _kubernetes;

    public ConnectionRegistry Registry { get; }

    public ControlPlaneMetrics Metrics { get; }

    /// <summary>The certificate authority, when one is configured.</summary>
    public CertificateService? Certificates { get; }

    /// <summary>gRPC over TLS (15012), when configured.</summary>
    public IPEndPoint? GrpcTlsEndPoint { get; private set; }

    public IPEndPoint GrpcEndPoint { get; private set; } = null!;

    /// <summary>Kubernetes mode with a CA: the trust-bundle ConfigMap in every meshed namespace.</summary>
    internal TrustBundlePublisher? TrustBundle => _trustBundle;

    public IPEndPoint MonitoringEndPoint { get; private set; } = null!;

    public bool IsReady => _ready;

    /// <summary>
    /// Reads the directory, then opens both ports. Throws when the directory does not exist, holds anything invalid
    /// (<see cref="MeshProxy.Config.Parsing.ConfigException"/>), or a port is taken.
    /// </summary>
    public static async Task<ControlPlaneHost> StartAsync(ControlPlaneOptions options, Action<ILoggingBuilder>? configureLogging = null, CancellationToken cancellationToken = default)
    {
        var tls = options.Certificates?.TlsEndPoint is null ? null : new ControlPlaneTlsIdentity();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        configureLogging?.Invoke(builder.Logging);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(options.GrpcEndPoint, listen => listen.Protocols = HttpProtocols.Http2);
            kestrel.Listen(options.MonitoringEndPoint, listen => listen.Protocols = HttpProtocols.Http1);
            if (tls is not null)
            {
                kestrel.Listen(options.Certificates!.TlsEndPoint!, tls.Configure);
            }

            // Kestrel never pings by default: a sidecar that vanished without a FIN (node lost, partition)
            // would keep its stream, and its row in syncz, forever.
            kestrel.Limits.Http2.KeepAlivePingDelay = options.KeepAlivePingDelay;
            kestrel.Limits.Http2.KeepAlivePingTimeout = options.KeepAlivePingTimeout;
            // Thousands of long-lived streams are the normal state, not an attack.
            kestrel.Limits.MaxConcurrentConnections = null;
            kestrel.Limits.MinRequestBodyDataRate = null;
            // A push's write waits until its bytes have left the stream's buffer: with the discovery
            // service's bound on concurrent pushes, a fan-out to every sidecar never buffers them all at once.
            kestrel.Limits.MaxResponseBufferSize = 16 * 1024;
        });

        // The services are made after Build (they need the host's loggers and the directory read first);
        // DI hands MapGrpcService these instances, and this host, not the container, disposes them.
        DiscoveryService? discovery = null;
        CertificateService? certificates = null;
        ControlPlaneHost? host = null;
        bool Ready() => host?._ready == true;
        builder.Services.AddGrpc(grpc =>
        {
            grpc.MaxReceiveMessageSize = options.MaxReceiveMessageSize;
            grpc.MaxSendMessageSize = options.MaxSendMessageSize;
            // A handler's exception text may hold paths or keys: callers get "Exception was thrown by handler.", the log gets the rest.
            grpc.EnableDetailedErrors = false;
            grpc.Interceptors.Add<MalformedMessageInterceptor>();
        });
        builder.Services.AddSingleton<IGrpcServiceActivator<DiscoveryService>>(new InstanceActivator<DiscoveryService>(() => discovery!));
        builder.Services.AddSingleton<IGrpcServiceActivator<CertificateService>>(new InstanceActivator<CertificateService>(() => certificates!));
        // grpc.health.v1: the server as a whole ("") is SERVING once both ports are open, like /ready.
        builder.Services.AddGrpcHealthChecks().AddCheck("ready", () => Ready() ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy("starting or stopping"));
        builder.Services.AddGrpcReflection();
        var app = builder.Build();
        var loggers = app.Services.GetRequiredService<ILoggerFactory>();
        if (MeshProxy.Identity.TlsKeyExchange.Restrict() is { } notLimited)
        {
            loggers.CreateLogger<ControlPlaneHost>().TlsGroupsNotLimited(notLimited);
        }

        ResourceDirectory? directory = options.ConfigDirectory.Length == 0 ? null
            : new ResourceDirectory(options.ConfigDirectory, options.Debounce, loggers.CreateLogger<ResourceDirectory>(), options.Time);
        KubernetesSource? kubernetes = null;
        k8s.IKubernetes? kubernetesClient = null;
        // Read before the CA loads: its trust domain and TTLs come from MeshConfig. The Kubernetes source waits for
        // its first list of everything: the ports open on a true state or not at all.
        try
        {
            directory?.Start();
            if (options.Kubernetes is { } kube)
            {
                kubernetesClient = options.KubernetesClient ?? KubernetesClients.Create(options.Kubeconfig);
                // One switch for every address check: the CA's, the token's pod binding and the stream's pod.
                var checkAddress = kube.CheckPeerAddress && (options.Certificates?.TokenReview?.CheckPeerAddress ?? true);
                kubernetes = new KubernetesSource(kubernetesClient, kube with { CheckPeerAddress = checkAddress }, directory, options.Time, loggers);
                await kubernetes.StartAsync(cancellationToken);
            }
        }
        catch
        {
            if (kubernetes is not null)
            {
                await kubernetes.DisposeAsync();
            }

            directory?.Dispose();
            await app.DisposeAsync();
            throw;
        }

        IConfigSource source = (IConfigSource?)kubernetes ?? directory ?? throw new ArgumentException("neither a configuration directory nor the Kubernetes source", nameof(options));
        var registry = new ConnectionRegistry();
        var metrics = new ControlPlaneMetrics(registry, source, kubernetes);
        var snapshots = new SnapshotCache();
        // Kubernetes mode: a config stream is served only to the workload its credential proves (token or SVID), and a
        // pod-bound token only to its pod, checked as for a CSR (one PodBinding for both, on the pod informer).
        var tokenReview = options.Certificates?.TokenReview ?? new TokenReviewOptions();
        var podBinding = kubernetes is null ? null : new PodBinding((ns, name) => kubernetes.Pods.Current.Items.GetValueOrDefault($"{ns}/{name}"), tokenReview);
        StreamAuthenticator? authenticator = kubernetesClient is null ? null : new StreamAuthenticator(
            new TokenReviewAuthenticator(kubernetesClient, tokenReview, options.Time), podBinding,
            () => certificates?.Authority, metrics, new MeshProxy.Identity.PeerCertificateVerifier(options.Time), loggers.CreateLogger<StreamAuthenticator>());
        if (tls is not null && authenticator is not null)
        {
            tls.ClientCertificates = authenticator.CertificateCallback;
        }

        discovery = new DiscoveryService(source, snapshots, registry, metrics, options.Time, options.PushWriteTimeout, loggers.CreateLogger<DiscoveryService>(), kubernetes, authenticator);
        if (kubernetes is not null)
        {
            // Statuses are written apart from the pushes: a sidecar's answer only schedules a write.
            kubernetes.WriteStatuses(registry, snapshots);
            discovery.SidecarsAnswered += kubernetes.SidecarsAnswered;
        }

        try
        {
            // On Kubernetes a workload proves itself with its pod's service-account token (TokenReview), not a stored token.
            // And unless files are named, the CA's root lives in a Secret shared by every replica, never on disk.
            certificates = options.Certificates is { } ca
                ? await CertificateService.CreateAsync(
                    kubernetesClient is null ? ca : ca with
                    {
                        TokenReview = tokenReview,
                        KubernetesCa = ca.KubernetesCa ?? (ca.CaDirectory is null && !ca.UsesOperatorCa ? new() : null),
                    },
                    source, metrics.Registry, loggers, options.Time, kubernetesClient,
                    podBinding, cancellationToken)
                : null;
        }
        catch
        {
            discovery.Dispose();
            if (kubernetes is not null)
            {
                await kubernetes.DisposeAsync();
            }

            directory?.Dispose();
            await app.DisposeAsync();
            throw;
        }

        host = new ControlPlaneHost(app, source, directory, kubernetes, discovery, registry, metrics, certificates, tls);
        var monitoring = new MonitoringEndpoints(registry, source, metrics, Ready, kubernetes);

        if (tls is not null)
        {
            await tls.StartAsync(certificates!.Authority, options.Certificates!.ServiceAccount, loggers, options.Time, cancellationToken);
        }

        if (options.Webhook is { } webhook && kubernetesClient is not null && certificates is not null)
        {
            host._webhook = new WebhookCertificatePublisher(
                kubernetesClient, certificates.Authority, webhook, options.Kubernetes!.ClusterDomain, options.Time, loggers.CreateLogger<WebhookCertificatePublisher>());
            host._webhook.Start();
        }

        var monitoringPort = -1;
        // The monitoring port answers plain HTTP/1.1 by path; everything else is gRPC, routed by method path
        // (unknown services and methods are UNIMPLEMENTED).
        app.MapWhen(context => context.Connection.LocalPort == monitoringPort, branch => branch.Run(monitoring.HandleAsync));
        app.UseRouting();
        app.MapGrpcService<DiscoveryService>();
        if (certificates is not null)
        {
            app.MapGrpcService<CertificateService>();
        }

        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();
        await app.StartAsync(cancellationToken);

        // Kestrel reports the bound addresses in the order the endpoints were configured.
        var addresses = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.ToList();
        host.GrpcEndPoint = ToEndPoint(addresses[0]);
        host.MonitoringEndPoint = ToEndPoint(addresses[1]);
        monitoringPort = host.MonitoringEndPoint.Port;
        if (tls is not null)
        {
            host.GrpcTlsEndPoint = ToEndPoint(addresses[2]);
            loggers.CreateLogger<ControlPlaneTlsIdentity>().TlsReady(tls.SpiffeId!.Value, host.GrpcTlsEndPoint.ToString());
        }

        if (kubernetes is not null && certificates is not null)
        {
            // The CA's bundle changes when MeshConfig reloads it (the CA follows Changed first: it subscribed earlier), and
            // at each step of a root rotation or a switch of CA (the CA's own Changed): either schedules a pass at once.
            var publisher = new TrustBundlePublisher(kubernetesClient!, kubernetes.Pods, () => certificates.Authority.Current.BundlePem, options.Kubernetes!.Informers, options.Time, loggers);
            source.Changed += _ => publisher.Schedule();
            certificates.Authority.Changed += _ => publisher.Schedule();
            host._trustBundle = publisher;
            publisher.Start();
        }

        host._ready = true;
        loggers.CreateLogger<ControlPlaneHost>().Listening(host.GrpcEndPoint.ToString(), host.MonitoringEndPoint.ToString(), source.Description);
        return host;
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        _ready = false;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await _app.StopAsync(timeout.Token);
        }
        finally
        {
            if (_tls is not null)
            {
                await _tls.DisposeAsync();
            }

            if (_webhook is not null)
            {
                await _webhook.DisposeAsync();
            }

            if (_trustBundle is not null)
            {
                await _trustBundle.DisposeAsync();
            }

            Certificates?.Dispose();
            if (_kubernetes is not null)
            {
                await _kubernetes.DisposeAsync();
            }

            _directory?.Dispose();
            await _app.DisposeAsync();
            _discovery.Dispose();
        }
    }

    /// <summary>Hands grpc-dotnet the one service instance this host made, for every call, and never disposes it.</summary>
    private sealed class InstanceActivator<T>(Func<T> instance) : IGrpcServiceActivator<T>
        where T : class
    {
        public GrpcActivatorHandle<T> Create(IServiceProvider serviceProvider) => new(instance(), created: false, state: null);

        public ValueTask ReleaseAsync(GrpcActivatorHandle<T> service) => ValueTask.CompletedTask;
    }

    private static IPEndPoint ToEndPoint(string address)
    {
        var uri = new Uri(address.Replace("[::]", "0.0.0.0", StringComparison.Ordinal).Replace("+", "0.0.0.0", StringComparison.Ordinal));
        return new IPEndPoint(IPAddress.Parse(uri.Host.Trim('[', ']')), uri.Port);
    }
}
