using System.Net;
using System.Net.Sockets;

namespace MeshProxy.ControlPlane.Tests.Infrastructure;

/// <summary>
/// A loopback TCP relay between sidecars and a control plane, so a test can point the same address at another
/// server (<see cref="Target"/>) or make the open connections go silent without closing them
/// (<see cref="Freeze"/>): bytes are read and held, nothing is forwarded, no FIN or RST is sent, as with a peer
/// that hangs or a dead link. Connections opened after a freeze flow normally.
/// </summary>
internal sealed class TcpRelay : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<(TcpClient Client, TcpClient Server, TaskCompletionSource Gate)> _pairs = [];
    private readonly Lock _lock = new();
    private readonly Task _accept;

    public TcpRelay(IPEndPoint target)
    {
        Target = target;
        _listener.Start();
        _accept = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Where new connections go; open ones keep their server.</summary>
    public IPEndPoint Target { get; set; }

    /// <summary>Connections accepted so far.</summary>
    public int Accepted
    {
        get
        {
            lock (_lock)
            {
                return _pairs.Count;
            }
        }
    }

    /// <summary>Stop forwarding on every open connection, in both directions; they stay open and silent for good.</summary>
    public void Freeze()
    {
        lock (_lock)
        {
            for (var i = 0; i < _pairs.Count; i++)
            {
                if (_pairs[i].Gate.Task.IsCompleted)
                {
                    _pairs[i] = (_pairs[i].Client, _pairs[i].Server, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        lock (_lock)
        {
            foreach (var (client, server, _) in _pairs)
            {
                client.Dispose();
                server.Dispose();
            }
        }

        await _accept.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
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

            int index;
            lock (_lock)
            {
                var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                open.SetResult();
                _pairs.Add((client, server, open));
                index = _pairs.Count - 1;
            }

            _ = PumpAsync(client, server, index);
            _ = PumpAsync(server, client, index);
        }
    }

    private Task GateOf(int index)
    {
        lock (_lock)
        {
            return _pairs[index].Gate.Task;
        }
    }

    private async Task PumpAsync(TcpClient from, TcpClient to, int index)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            var input = from.GetStream();
            var output = to.GetStream();
            while (true)
            {
                var read = await input.ReadAsync(buffer, _stop.Token);
                await GateOf(index).WaitAsync(_stop.Token);
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
