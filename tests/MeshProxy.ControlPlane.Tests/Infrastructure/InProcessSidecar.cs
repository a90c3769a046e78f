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
    /// <paramref name="tokenFile"/> (and <paramref name="caFile"/> for https://) it asks the control plane's CA for its SVID;
    /// <paramref name="labels"/> are the Sidecar's metadata labels (what PeerAuthentication selectors match).
    /// </summary>
    public static string WriteBootstrap(
        string directory, string workload, string ns, string controlPlane, int appPort = 18080, string? tokenFile = null, string? caFile = null,
        IReadOnlyDictionary<string, string>? labels = null)
    {
        var credentials = (tokenFile is null ? string.Empty : $", tokenFile: {tokenFile}") + (caFile is null ? string.Empty : $", caFile: {caFile}");
        var labelText = labels is null ? string.Empty : $", labels: {{ {string.Join(", ", labels.Select(l => $"{l.Key}: {l.Value}"))} }}";
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, $"{workload}.yaml");
        File.WriteAllText(path, $$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: {{workload}}, namespace: {{ns}}{{labelText}} }
            spec:
              workload: { serviceAccount: {{workload}} }
              app: { port: {{appPort}} }
              listeners: { outbound: 0, inbound: 0, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
              drainDuration: 0s
              controlPlane: { address: "{{controlPlane}}"{{credentials}} }

            """);
        return path;
    }

    /// <summary>The CA client retrying within a second (for <see cref="StartAsync"/>'s configure).</summary>
    public static void FastCertificateAuthority(IServiceCollection services) => services.AddSingleton(new MeshProxy.Sidecar.Identity.CertificateAuthorityClientOptions
    {
        Rotation = new MeshProxy.Identity.SvidRotatorOptions { InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromMilliseconds(500) },
    });

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
