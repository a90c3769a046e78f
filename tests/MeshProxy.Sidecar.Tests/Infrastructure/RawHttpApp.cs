using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MeshProxy.Sidecar.Tests.Infrastructure;

/// <summary>
/// An app written by hand on a socket, for answers a real app would not give and for watching its connections:
/// a raw HTTP/1.1 keep-alive server on a kernel-chosen loopback port. Request i (counted over all connections,
/// requests without bodies) gets <c>answer(i)</c> written as it is, after <c>delay</c>; then <c>then</c> runs on the
/// stream, and with <c>closeAfterEach</c> the connection is closed without a word. It counts connections accepted,
/// open now and open at most, and notes when the client last closed one.
/// </summary>
internal sealed class RawHttpApp : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Func<int, string> _answer;
    private readonly TimeSpan _delay;
    private readonly Func<NetworkStream, Task>? _then;
    private readonly bool _closeAfterEach;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Task _accepting;
    private int _accepted;
    private int _open;
    private int _maxOpen;
    private int _requests = -1;
    private long _lastClosedMs = -1;

    public RawHttpApp(Func<int, string> answer, TimeSpan delay = default, bool closeAfterEach = false, Func<NetworkStream, Task>? then = null)
    {
        _answer = answer;
        _delay = delay;
        _then = then;
        _closeAfterEach = closeAfterEach;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    /// <summary>Every request answered "ok" after <paramref name="delay"/>.</summary>
    public static RawHttpApp Ok(TimeSpan delay) => new(_ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", delay);

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Accepted => Volatile.Read(ref _accepted);

    public int Open => Volatile.Read(ref _open);

    public int MaxOpen => Volatile.Read(ref _maxOpen);

    /// <summary>Milliseconds since the app started at which the client last closed a connection; -1 if never.</summary>
    public long LastClosedMs => Interlocked.Read(ref _lastClosedMs);

    public long NowMs => _clock.ElapsedMilliseconds;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
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
                while (await stream.ReadAsync(buffer, _stop.Token) is var n and > 0)
                {
                    text.Append(Encoding.ASCII.GetString(buffer, 0, n));
                    int end;
                    while ((end = text.ToString().IndexOf("\r\n\r\n", StringComparison.Ordinal)) >= 0)
                    {
                        text.Remove(0, end + 4);
                        await Task.Delay(_delay, _stop.Token);
                        await stream.WriteAsync(Encoding.Latin1.GetBytes(_answer(Interlocked.Increment(ref _requests))), _stop.Token);
                        if (_then is not null)
                        {
                            await _then(stream);
                        }

                        if (_closeAfterEach)
                        {
                            return;
                        }
                    }
                }
            }
            catch (Exception)
            {
                // reset or closed by the client, or stopping
            }
            finally
            {
                Interlocked.Exchange(ref _lastClosedMs, _clock.ElapsedMilliseconds);
                Interlocked.Decrement(ref _open);
            }
        }
    }
}
