using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.ControlPlaneClient;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Egress;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Pipelines;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Hosting;

/// <summary>Wires the sidecar together. The same code runs the process and the in-process tests.</summary>
internal static class SidecarHost
{
    /// <summary>
    /// Builds the host and loads the configuration. Throws <see cref="MeshProxy.Config.Parsing.ConfigException"/>
    /// when the file is invalid, and <see cref="PodEnvironmentException"/> when a pod setting in the environment is,
    /// before any port is opened.
    /// </summary>
    public static IHost Build(string configPath, Action<IServiceCollection>? configureServices = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, Args = [] });
        builder.Configuration.AddEnvironmentVariables();
        // The defaults first, so that Logging__LogLevel__<category> in the environment overrides them (of two
        // rules for the same category the later one wins).
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        // YARP logs every request at Information and every failed attempt at Warning with its stack trace;
        // the sidecar writes its own line per failure (flag and reason) and the stack trace at Debug.
        builder.Logging.AddFilter("Yarp", LogLevel.Error);
        builder.Logging.AddConfiguration(builder.Configuration.GetSection("Logging"));
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });

        // Our own lifecycle bounds every stage of shutdown; the host must not cut it short.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMinutes(11));

        var services = builder.Services;
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton(sp => Listeners.HandshakeRateLimit.ForThisMachine(sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<SnapshotStore>();
        services.AddSingleton<SidecarTelemetry>();

        // Read first: the pod's override of its Sidecar spec is part of the bootstrap.
        var pod = PodEnvironment.Read(Environment.GetEnvironmentVariable);
        services.AddSingleton(pod);

        // A Sidecar resource naming a control plane switches to pushed configuration; otherwise the
        // bootstrap file is the whole configuration (standalone mode).
        var bootstrap = ResourceParser.ParseFile(configPath);
        if (pod.SidecarOverride is { } podOverride)
        {
            bootstrap = podOverride.ApplyTo(bootstrap);
        }

        var controlPlaneSidecar = bootstrap.OfKind<SidecarResource>().FirstOrDefault(s => s.Spec.ControlPlane is not null);
        if (controlPlaneSidecar is null)
        {
            services.AddSingleton(sp => new BootstrapFileSource(
                configPath, pod.SidecarOverride, sp.GetRequiredService<SnapshotStore>(), sp.GetRequiredService<ISnapshotActivator>(),
                sp.GetRequiredService<ILogger<BootstrapFileSource>>(), sp.GetRequiredService<TimeProvider>()));
            services.AddSingleton<IConfigSource>(sp => sp.GetRequiredService<BootstrapFileSource>());
        }
        else
        {
            bootstrap.ThrowIfInvalid();
            services.AddSingleton(new ControlPlaneClientOptions());
            services.AddSingleton(sp => ActivatorUtilities.CreateInstance<ControlPlaneTls>(sp, controlPlaneSidecar, configPath));
            services.AddSingleton(sp => ActivatorUtilities.CreateInstance<ControlPlaneCredentials>(sp, controlPlaneSidecar, configPath, sp.GetRequiredService<SidecarIdentity>().Store));
            services.AddSingleton(sp => ActivatorUtilities.CreateInstance<ControlPlaneSource>(sp, controlPlaneSidecar, configPath));
            services.AddSingleton<IConfigSource>(sp => sp.GetRequiredService<ControlPlaneSource>());
        }

        // Identity: one SvidStore, filled by spec.tls's files or, with controlPlane.tokenFile, by the control plane's CA.
        services.AddSingleton<SidecarIdentity>();
        services.AddSingleton(sp => new PeerCertificateVerifier(sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<TlsFileSource>();
        services.AddSingleton<UpstreamIdentities>();
        services.AddSingleton(sp => ActivatorUtilities.CreateInstance<UpstreamTls>(sp, sp.GetRequiredService<ILoggerFactory>().CreateLogger<UpstreamTls>()));
        services.AddSingleton<UpstreamTransport>();
        services.AddSingleton(sp => new Forwarding.Http11.LeanForwarder(sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<IClusterPools>(sp => sp.GetRequiredService<UpstreamTransport>());

        // Sources put snapshots in force through the runtime store, which builds each one's runtime state first.
        services.AddSingleton<Runtime.RuntimeStore>();
        services.AddSingleton<ISnapshotActivator>(sp => sp.GetRequiredService<Runtime.RuntimeStore>());
        services.AddHttpForwarder();
        services.AddSingleton<Resilience.IUpstreamSender, UpstreamSender>();
        services.AddSingleton<Resilience.ResilientForwarder>();
        services.AddSingleton(new Mirroring.MirrorOptions()); // a test's configureServices registers its own after
        services.AddSingleton<Mirroring.RequestMirror>();
        services.AddSingleton<EgressResolver>();
        services.AddSingleton<EgressGate>();
        services.AddSingleton<EgressForwarder>();
        services.AddSingleton<Tcp.TcpProxy>();
        services.AddSingleton<Listeners.EgressConnections>();
        services.AddSingleton(new OutboundReadinessOptions());
        services.AddSingleton<OutboundReadiness>();
        services.AddSingleton<OutboundPipeline>();
        services.AddSingleton(new Authentication.JwksCacheOptions());
        services.AddSingleton<Authentication.JwksCache>();
        services.AddSingleton<ExternalAuthorization.IMeshServiceConnector, MeshServiceConnector>();
        services.AddSingleton<ExternalAuthorization.ExternalAuthorizer>();
        services.AddSingleton<InboundPipeline>();
        var caMode = controlPlaneSidecar?.Spec.ControlPlane?.TokenFile is not null;
        if (caMode)
        {
            // Before the lifecycle, so the CA request is under way while the listeners start.
            services.AddSingleton(new CertificateAuthorityClientOptions { RequestedTtl = pod.CertificateTtl });
            services.AddSingleton(sp => ActivatorUtilities.CreateInstance<ControlPlaneIdentity>(sp, controlPlaneSidecar!, configPath));
            services.AddHostedService(sp => sp.GetRequiredService<ControlPlaneIdentity>());
        }

        services.AddSingleton<SidecarLifecycle>();
        services.AddHostedService(sp => sp.GetRequiredService<SidecarLifecycle>());

        if (pod.AppProbes.Count > 0)
        {
            services.AddSingleton(sp => new Admin.AppProbes(pod.AppProbes, sp.GetRequiredService<ILogger<Admin.AppProbes>>()));
        }

        if (pod.ExitOnAppExit)
        {
            services.AddHostedService<AppExitWatcher>();
        }
        if (controlPlaneSidecar is not null)
        {
            // Registered after the lifecycle so that it stops first: no snapshot lands mid-drain.
            services.AddHostedService(sp => sp.GetRequiredService<ControlPlaneSource>());
        }

        configureServices?.Invoke(services);

        var host = builder.Build();
        if (controlPlaneSidecar is null)
        {
            host.Services.GetRequiredService<BootstrapFileSource>().LoadInitial();
        }
        else
        {
            host.Services.GetRequiredService<ControlPlaneSource>().LoadInitial();
        }

        host.Services.GetRequiredService<TlsFileSource>().LoadInitial();
        if (caMode)
        {
            // Decided before anything resolves the transports or starts a listener: mTLS from the first
            // connection, refusing mesh traffic until the CA's certificate arrives.
            host.Services.GetRequiredService<SidecarIdentity>().Enable();
        }

        return host;
    }
}
