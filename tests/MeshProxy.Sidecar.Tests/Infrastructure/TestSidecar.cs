using System.Net;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Hosting;
using MeshProxy.Sidecar.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace MeshProxy.Sidecar.Tests.Infrastructure;

/// <summary>A real sidecar, in this process, on real loopback sockets with kernel-chosen ports.</summary>
internal sealed class TestSidecar : IAsyncDisposable
{
    private readonly IHost _host;

    private TestSidecar(IHost host, string configPath)
    {
        _host = host;
        ConfigPath = configPath;
    }

    public string ConfigPath { get; }

    public SidecarLifecycle Lifecycle => _host.Services.GetRequiredService<SidecarLifecycle>();

    public SnapshotStore Store => _host.Services.GetRequiredService<SnapshotStore>();

    public BootstrapFileSource Source => _host.Services.GetRequiredService<BootstrapFileSource>();

    public SidecarIdentity Identity => _host.Services.GetRequiredService<SidecarIdentity>();

    public IPEndPoint Outbound => Lifecycle.Endpoints.Outbound!;

    public IPEndPoint Inbound => Lifecycle.Endpoints.Inbound!;

    public IPEndPoint Admin => Lifecycle.Endpoints.Admin!;

    public IPEndPoint Stats => Lifecycle.Endpoints.Stats!;

    public Uri OutboundUri => new($"http://{Outbound}");

    public Uri InboundUri => new($"http://{Inbound}");

    public static async Task<TestSidecar> StartAsync(MeshYaml yaml, Action<IServiceCollection>? configureServices = null)
    {
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
        var path = yaml.WriteTo(dir);
        var host = SidecarHost.Build(path, configureServices);
        await host.StartAsync();
        return new TestSidecar(host, path);
    }

    public Task StopAsync() => _host.StopAsync();

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await _host.StopAsync(timeout.Token);
        _host.Dispose();
    }
}
