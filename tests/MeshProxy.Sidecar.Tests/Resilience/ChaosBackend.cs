using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>A Kestrel backend on a kernel-chosen loopback port whose behaviour the test sets per request; it counts what it receives.</summary>
internal sealed class ChaosBackend : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _received;

    private ChaosBackend(WebApplication app) => _app = app;

    public int Port { get; private set; }

    /// <summary>Requests that reached the handler (the request line and headers arrived).</summary>
    public int Received => Volatile.Read(ref _received);

    public static async Task<ChaosBackend> StartAsync(Func<HttpContext, Task> handler, int port = 0)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port));
        var app = builder.Build();
        var backend = new ChaosBackend(app);
        app.Run(async context =>
        {
            Interlocked.Increment(ref backend._received);
            await handler(context);
        });
        await app.StartAsync();
        backend.Port = new Uri(app.Urls.First()).Port;
        return backend;
    }

    public static Task Ok(HttpContext context) => context.Response.WriteAsync("ok");

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }
}

/// <summary>
/// The keep-alive race, made certain: a raw HTTP/1.1 server that answers the first request on each
/// connection with a keep-alive response, then closes the connection when the next request arrives on
/// it, without answering — what a server closing an idle connection does to a client that reuses it.
/// </summary>
internal sealed class RaceBackend : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private int _answered;
    private int _closedOnReuse;

    public RaceBackend()
    {
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Answered => Volatile.Read(ref _answered);

    public int ClosedOnReuse => Volatile.Read(ref _closedOnReuse);

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            await _accepting;
        }
        catch (Exception)
        {
            // stopping
        }
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var client = await _listener.AcceptTcpClientAsync(_stop.Token);
            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            var stream = client.GetStream();
            var buffer = new byte[8192];
            var first = true;
            var text = new StringBuilder();
            while (true)
            {
                int n;
                try
                {
                    n = await stream.ReadAsync(buffer, _stop.Token);
                }
                catch (Exception)
                {
                    return;
                }

                if (n == 0)
                {
                    return;
                }

                if (!first)
                {
                    Interlocked.Increment(ref _closedOnReuse);
                    client.Client.LingerState = new LingerOption(true, 0); // RST, as a busy server's close often is
                    return;
                }

                text.Append(Encoding.ASCII.GetString(buffer, 0, n));
                if (!text.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    continue;
                }

                first = false;
                Interlocked.Increment(ref _answered);
                var response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"u8.ToArray();
                await stream.WriteAsync(response, _stop.Token);
            }
        }
    }
}
