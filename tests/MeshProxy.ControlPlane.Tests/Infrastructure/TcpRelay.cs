using System.Net;
using System.Net.Sockets;

namespace MeshProxy.ControlPlane.Tests.Infrastructure;

/// <summary>
/// A loopback TCP relay between sidecars and a control plane, so a test can point the same address at another
/// server (<see cref="Target"/>) or make the path go silent without closing it (<see cref="Pause"/>): bytes
/// are read and held, nothing is forwarded, no FIN or RST is sent, as with a peer that hangs or a dead link.
/// </summary>
internal sealed class TcpRelay : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<(TcpClient Client, TcpClient Server)> _pairs = [];
    private readonly Lock _lock = new();
    private readonly Task _accept;
    private volatile TaskCompletionSource _gate = Open();

    public TcpRelay(IPEndPoint target)
    {
        Target = target;
        _listener.Start();
        _accept = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Where new connections go; open ones keep their server.</summary>
    public IPEndPoint Target { get; set; }

    /// <summary>Stop forwarding in both directions; connections stay open and silent.</summary>
    public void Pause() => _gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Resume() => _gate.TrySetResult();

    public int OpenConnections
    {
        get
        {
            lock (_lock)
            {
                return _pairs.Count(p => p.Client.Connected);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        _gate.TrySetResult();
        lock (_lock)
        {
            foreach (var (client, server) in _pairs)
            {
                client.Dispose();
                server.Dispose();
            }
        }

        await _accept.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }

    private static TaskCompletionSource Open()
    {
        var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        open.SetResult();
        return open;
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var client = await _listener.AcceptTcpClientAsync(_stop.Token);
            var server = new TcpClient();
            try
            {
                await server.ConnectAsync(Target, _stop.Token);
            }
            catch (SocketException)
            {
                client.Dispose();
                server.Dispose();
                continue;
            }

            lock (_lock)
            {
                _pairs.Add((client, server));
            }

            _ = PumpAsync(client, server);
            _ = PumpAsync(server, client);
        }
    }

    private async Task PumpAsync(TcpClient from, TcpClient to)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            var input = from.GetStream();
            var output = to.GetStream();
            while (true)
            {
                var read = await input.ReadAsync(buffer, _stop.Token);
                await _gate.Task.WaitAsync(_stop.Token);
                if (read == 0)
                {
                    to.Client.Shutdown(SocketShutdown.Send);
                    return;
                }

                await output.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            from.Dispose();
            to.Dispose();
        }
    }
}
