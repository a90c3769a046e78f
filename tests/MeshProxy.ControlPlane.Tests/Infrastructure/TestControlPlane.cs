using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using MeshProxy.ControlPlane.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Tests.Infrastructure;

/// <summary>A real control plane in this process, on kernel-chosen loopback ports, reading a temporary directory.</summary>
internal sealed class TestControlPlane : IAsyncDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    private TestControlPlane(ControlPlaneHost host, string directory)
    {
        Host = host;
        Directory = directory;
    }

    public ControlPlaneHost Host { get; }

    public string Directory { get; }

    public string GrpcAddress => $"127.0.0.1:{Host.GrpcEndPoint.Port}";

    public Uri GrpcUri => new($"http://{GrpcAddress}");

    public Uri MonitoringUri => new($"http://127.0.0.1:{Host.MonitoringEndPoint.Port}");

    /// <param name="logs">Keeps the control plane's log lines, when given.</param>
    public static async Task<TestControlPlane> StartAsync(string? directory = null, int grpcPort = 0, Func<ControlPlaneOptions, ControlPlaneOptions>? configure = null, LogCapture? logs = null)
    {
        directory ??= RepoPaths.NewTempDirectory();
        var options = new ControlPlaneOptions
        {
            ConfigDirectory = directory,
            GrpcEndPoint = new IPEndPoint(IPAddress.Loopback, grpcPort),
            MonitoringEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
        };
        options = configure?.Invoke(options) ?? options;
        var host = await ControlPlaneHost.StartAsync(options, logs is null ? null : b => b.AddProvider(logs));
        return new TestControlPlane(host, directory);
    }

    public NodePeer Connect(string workload, string ns, params string[] labels) =>
        NodePeer.Start("discovery_client.js", [GrpcAddress, workload, ns, .. labels]);

    /// <summary>A grpc-js sidecar that sends <paramref name="token"/> as its bearer credential (Kubernetes mode asks for one).</summary>
    public NodePeer ConnectWithToken(string token, string workload, string ns, params string[] labels) =>
        NodePeer.Start("discovery_client.js", ["--token", token, GrpcAddress, workload, ns, .. labels]);

    public async Task<JsonElement> SynczAsync() =>
        await Http.GetFromJsonAsync<JsonElement>(new Uri(MonitoringUri, "/debug/syncz"));

    public async Task<JsonElement> ConfigzAsync() =>
        await Http.GetFromJsonAsync<JsonElement>(new Uri(MonitoringUri, "/debug/configz"));

    public Task<string> MetricsAsync() => Http.GetStringAsync(new Uri(MonitoringUri, "/metrics"));

    /// <summary>
    /// Polls until <paramref name="condition"/> holds (the directory watcher and pushes are asynchronous). The default
    /// wait is a smoke limit for a loaded 2-core CI machine; only a failing test waits it out.
    /// </summary>
    public static async Task EventuallyAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return;
            }

            await Task.Delay(50);
        }

        Assert.Fail($"timed out waiting for: {what}");
    }

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}
