using System.Net;
using MeshProxy.Grpc.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Grpc.Tests.Infrastructure;

/// <summary>The echo service on a real Kestrel, in a WebApplication, h2c on 127.0.0.1:0.</summary>
internal sealed class GrpcTestHost : IAsyncDisposable
{
    private readonly WebApplication app;

    private GrpcTestHost(WebApplication app, EchoService service, ListLoggerProvider logs, Uri address)
    {
        this.app = app;
        Service = service;
        Logs = logs;
        Address = address;
    }

    public EchoService Service { get; }

    public ListLoggerProvider Logs { get; }

    public Uri Address { get; }

    public string HostPort => $"{Address.Host}:{Address.Port}";

    public static async Task<GrpcTestHost> StartAsync(GrpcServerOptions? options = null)
    {
        var logs = new ListLoggerProvider();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders().AddProvider(logs).SetMinimumLevel(LogLevel.Debug);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2);
            kestrel.ConfigureGrpcKeepAlive();
        });
        var app = builder.Build();
        var service = new EchoService();
        var server = service.Register(new GrpcServerBuilder()).Build(options, app.Services.GetRequiredService<ILoggerFactory>());
        app.Run(server.HandleAsync);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        return new GrpcTestHost(app, service, logs, new Uri(address.Replace("[::1]", "127.0.0.1", StringComparison.Ordinal)));
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await app.StopAsync(cts.Token);
        await app.DisposeAsync();
    }
}
