using MeshProxy.Sidecar.Configuration;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Pipelines;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Hosting;

/// <summary>Wires the sidecar together. The same code runs the process and the in-process tests.</summary>
internal static class SidecarHost
{
    /// <summary>
    /// Builds the host and loads the configuration. Throws <see cref="MeshProxy.Config.Parsing.ConfigException"/>
    /// when the file is invalid, before any port is opened.
    /// </summary>
    public static IHost Build(string configPath, Action<IServiceCollection>? configureServices = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, Args = [] });
        builder.Configuration.AddEnvironmentVariables();
        builder.Logging.AddConfiguration(builder.Configuration.GetSection("Logging"));
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Yarp", LogLevel.Warning); // YARP logs every request at Information

        // Our own lifecycle bounds every stage of shutdown; the host must not cut it short.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMinutes(11));

        var services = builder.Services;
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<SnapshotStore>();
        services.AddSingleton(sp => ActivatorUtilities.CreateInstance<BootstrapFileSource>(sp, configPath));
        // Identity: one SvidStore, filled by spec.tls's files here (or by the control plane's CA).
        services.AddSingleton<SidecarIdentity>();
        services.AddSingleton(sp => new PeerCertificateVerifier(sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<TlsFileSource>();
        services.AddSingleton<UpstreamIdentities>();
        services.AddSingleton(sp => ActivatorUtilities.CreateInstance<UpstreamTls>(sp, sp.GetRequiredService<ILoggerFactory>().CreateLogger<UpstreamTls>()));
        services.AddSingleton<UpstreamTransport>();
        services.AddHttpForwarder();
        services.AddSingleton<OutboundPipeline>();
        services.AddSingleton<InboundPipeline>();
        services.AddSingleton<SidecarLifecycle>();
        services.AddHostedService(sp => sp.GetRequiredService<SidecarLifecycle>());
        configureServices?.Invoke(services);

        var host = builder.Build();
        host.Services.GetRequiredService<BootstrapFileSource>().LoadInitial();
        host.Services.GetRequiredService<TlsFileSource>().LoadInitial();
        return host;
    }
}
