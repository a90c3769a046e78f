using System.Net;
using MeshProxy.Sidecar.Admin;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.ControlPlaneClient;
using MeshProxy.Sidecar.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace MeshProxy.ControlPlane.Tests.Infrastructure;

/// <summary>A real sidecar in this process, in control-plane mode, on kernel-chosen loopback ports.</summary>
internal sealed class InProcessSidecar : IAsyncDisposable
{
    private readonly IHost _host;
    private bool _stopped;

    private InProcessSidecar(IHost host, string bootstrapPath)
    {
        _host = host;
        BootstrapPath = bootstrapPath;
    }

    public string BootstrapPath { get; }

    public IServiceProvider Services => _host.Services;

    public SnapshotStore Store => _host.Services.GetRequiredService<SnapshotStore>();

    public ControlPlaneSource Source => _host.Services.GetRequiredService<ControlPlaneSource>();

    private ListenerEndpoints Endpoints => _host.Services.GetRequiredService<SidecarLifecycle>().Endpoints;

    public Uri OutboundUri => new($"http://{Endpoints.Outbound}");

    public Uri AdminUri => new($"http://{Endpoints.Admin}");

    public Uri StatsUri => new($"http://{Endpoints.Stats}");

    public IPEndPoint InboundEndPoint => Endpoints.Inbound!;

    /// <summary>
    /// Writes a bootstrap (a Sidecar resource naming the control plane) into <paramref name="directory"/>; with
    /// <paramref name="tokenFile"/> (relative to the directory) the sidecar asks the CA for a certificate with that token.
    /// </summary>
    public static string WriteBootstrap(string directory, string workload, string ns, string controlPlane, int appPort = 18080, string? tokenFile = null)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, $"{workload}.yaml");
        File.WriteAllText(path, $$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: {{workload}}, namespace: {{ns}} }
            spec:
              workload: { serviceAccount: {{workload}} }
              app: { port: {{appPort}} }
              listeners: { outbound: 0, inbound: 0, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
              drainDuration: 0s
              controlPlane: { address: "{{controlPlane}}"{{(tokenFile is null ? string.Empty : $", tokenFile: {tokenFile}")}} }

            """);
        return path;
    }

    public static async Task<InProcessSidecar> StartAsync(string bootstrapPath, Action<IServiceCollection>? configure = null)
    {
        var host = SidecarHost.Build(bootstrapPath, services =>
        {
            services.AddSingleton(new ControlPlaneClientOptions
            {
                InitialBackoff = TimeSpan.FromMilliseconds(100),
                MaxBackoff = TimeSpan.FromSeconds(1),
            });
            configure?.Invoke(services);
        });
        await host.StartAsync();
        return new InProcessSidecar(host, bootstrapPath);
    }

    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await _host.StopAsync(timeout.Token);
        _host.Dispose();
    }

    public ValueTask DisposeAsync() => new(StopAsync());
}
