using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>
/// A raw HTTP/1.1 keep-alive server on a kernel-chosen loopback port that watches its connections: how many
/// are open, the most ever open at once, and when the client closed each. Every request (no body) is
/// answered "ok" after <c>delay</c>.
/// </summary>
internal sealed class ConnectionBackend : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly TimeSpan _delay;
    private readonly Task _accepting;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _open;
    private int _maxOpen;
    private int _accepted;
    private long _lastClosedMs = -1;

    public ConnectionBackend(TimeSpan delay)
    {
        _delay = delay;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Open => Volatile.Read(ref _open);

    public int MaxOpen => Volatile.Read(ref _maxOpen);

    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>Milliseconds since the backend started at which the client last closed a connection; -1 if never.</summary>
    public long LastClosedMs => Interlocked.Read(ref _lastClosedMs);

    public long NowMs => _clock.ElapsedMilliseconds;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
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
            Interlocked.Increment(ref _accepted);
            var open = Interlocked.Increment(ref _open);
            int max;
            while (open > (max = Volatile.Read(ref _maxOpen)) && Interlocked.CompareExchange(ref _maxOpen, open, max) != max)
            {
            }

            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            var stream = client.GetStream();
            var buffer = new byte[8192];
            var text = new StringBuilder();
            try
            {
                while (true)
                {
                    var n = await stream.ReadAsync(buffer, _stop.Token);
                    if (n == 0)
                    {
                        break;
                    }

                    text.Append(Encoding.ASCII.GetString(buffer, 0, n));
                    int end;
                    while ((end = text.ToString().IndexOf("\r\n\r\n", StringComparison.Ordinal)) >= 0)
                    {
                        text.Remove(0, end + 4);
                        await Task.Delay(_delay, _stop.Token);
                        await stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"u8.ToArray(), _stop.Token);
                    }
                }
            }
            catch (Exception)
            {
                // reset by the client, or stopping
            }

            Interlocked.Exchange(ref _lastClosedMs, _clock.ElapsedMilliseconds);
            Interlocked.Decrement(ref _open);
        }
    }
}
