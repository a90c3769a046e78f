using MeshProxy.Samples.App;
using Microsoft.AspNetCore.Builder;

namespace MeshProxy.Sidecar.Tests.Infrastructure;

/// <summary>The sample app as a Kestrel backend on a kernel-chosen loopback port.</summary>
internal sealed class Backend : IAsyncDisposable
{
    private readonly WebApplication _app;

    private Backend(WebApplication app, string name)
    {
        _app = app;
        Name = name;
        Port = app.BoundPort();
    }

    public string Name { get; }

    public int Port { get; }

    public static async Task<Backend> StartAsync(string name, string? outboundProxy = null, bool http2Only = false)
    {
        var app = SampleApp.Build(name, 0, outboundProxy, quiet: true, http2Only: http2Only);
        await app.StartAsync();
        return new Backend(app, name);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
