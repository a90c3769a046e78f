using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;

namespace MeshProxy.Testing;

/// <summary>A real TLS echo server on 127.0.0.1:0 (SslStream over a socket); records every handshake's outcome.</summary>
public sealed class TlsEchoServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Func<SslServerAuthenticationOptions> _options;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly ConcurrentBag<Task> _connections = [];

    public TlsEchoServer(Func<SslServerAuthenticationOptions> options)
    {
        _options = options;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>One entry per connection: null when the handshake succeeded, else the exception.</summary>
    public BlockingCollection<Exception?> Handshakes { get; } = [];

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception)
            {
                return;
            }

            _connections.Add(ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using var _ = client;
        await using var ssl = new SslStream(client.GetStream());
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            await ssl.AuthenticateAsServerAsync(_options(), timeout.Token);
        }
        catch (Exception ex)
        {
            Handshakes.Add(ex);
            return;
        }

        Handshakes.Add(null);
        var buffer = new byte[4096];
        try
        {
            int read;
            while ((read = await ssl.ReadAsync(buffer, _stop.Token)) > 0)
            {
                await ssl.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
            }
        }
        catch (Exception)
        {
            // The peer went away or the server is stopping; either ends this connection only.
        }
    }

    public Exception? NextHandshake()
    {
        Assert.True(Handshakes.TryTake(out var outcome, TimeSpan.FromSeconds(15)), "the server saw no handshake");
        return outcome;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        await Task.WhenAll(_connections).WaitAsync(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }
}
