using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshProxy.Sidecar.Tcp;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.Sidecar.Tests.Tcp;

/// <summary>
/// The byte splice between two real socket pairs (client &lt;-&gt; proxy's downstream end, proxy's upstream end &lt;-&gt;
/// server): half-closes pass through, the idle timeout runs on the injected clock, a stop request ends it.
/// </summary>
public sealed class SpliceTests
{
    private static readonly TimeSpan Idle = TimeSpan.FromHours(1);
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_half_close_passes_through_while_the_other_direction_goes_on()
    {
        await using var world = await World.StartAsync();
        var run = Splice.RunAsync(world.Downstream, world.Upstream, default, Idle, new FakeTimeProvider(), CancellationToken.None);

        await world.Client.SendAsync("hello"u8.ToArray(), Ct);
        world.Client.Shutdown(SocketShutdown.Send);
        Assert.Equal("hello", await ReadToEndAsync(world.Server)); // the client's end arrived as the server's end of input

        // The server answers after the client has finished sending: the answer still reaches it, then the server's end.
        await world.Server.SendAsync("late reply"u8.ToArray(), Ct);
        world.Server.Shutdown(SocketShutdown.Send);
        Assert.Equal("late reply", await ReadToEndAsync(world.Client));
        Assert.Equal(Splice.Outcome.Completed, await run.WaitAsync(Generous, Ct));
    }

    [Fact]
    public async Task A_stream_that_moves_no_byte_for_the_idle_timeout_is_closed_and_each_byte_restarts_the_wait()
    {
        await using var world = await World.StartAsync();
        var time = new FakeTimeProvider();
        var run = Splice.RunAsync(world.Downstream, world.Upstream, default, Idle, time, CancellationToken.None);

        time.Advance(Idle - TimeSpan.FromMinutes(1));
        await world.Server.SendAsync("x"u8.ToArray(), Ct);
        Assert.Equal("x", await ReadAsync(world.Client, 1));

        // An hour after the start, but not an hour after the last byte: still open.
        time.Advance(TimeSpan.FromMinutes(2));
        await world.Client.SendAsync("y"u8.ToArray(), Ct);
        Assert.Equal("y", await ReadAsync(world.Server, 1));
        Assert.False(run.IsCompleted);

        time.Advance(Idle);
        Assert.Equal(Splice.Outcome.IdleTimeout, await run.WaitAsync(Generous, Ct));
    }

    [Fact]
    public async Task An_idle_timeout_turned_off_never_closes_a_quiet_stream()
    {
        await using var world = await World.StartAsync();
        var time = new FakeTimeProvider();
        var run = Splice.RunAsync(world.Downstream, world.Upstream, default, Timeout.InfiniteTimeSpan, time, CancellationToken.None);
        await world.Client.SendAsync("a"u8.ToArray(), Ct);
        Assert.Equal("a", await ReadAsync(world.Server, 1));

        time.Advance(TimeSpan.FromDays(60));
        await world.Server.SendAsync("b"u8.ToArray(), Ct);
        Assert.Equal("b", await ReadAsync(world.Client, 1));
        Assert.False(run.IsCompleted);
    }

    [Fact]
    public async Task The_listener_stopping_ends_an_open_stream()
    {
        await using var world = await World.StartAsync();
        using var stop = new CancellationTokenSource();
        var run = Splice.RunAsync(world.Downstream, world.Upstream, default, Idle, new FakeTimeProvider(), stop.Token);
        await world.Client.SendAsync("a"u8.ToArray(), Ct);
        Assert.Equal("a", await ReadAsync(world.Server, 1));

        await stop.CancelAsync();
        Assert.Equal(Splice.Outcome.Aborted, await run.WaitAsync(Generous, Ct));
    }

    private static async Task<string> ReadAsync(Socket socket, int count)
    {
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), Ct).AsTask().WaitAsync(Generous, Ct);
            Assert.NotEqual(0, n);
            read += n;
        }

        return Encoding.ASCII.GetString(buffer);
    }

    private static async Task<string> ReadToEndAsync(Socket socket)
    {
        var text = new StringBuilder();
        var buffer = new byte[1024];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, Ct).AsTask().WaitAsync(Generous, Ct)) > 0)
        {
            text.Append(Encoding.ASCII.GetString(buffer, 0, n));
        }

        return text.ToString();
    }

    private sealed class World : IAsyncDisposable
    {
        private World(Socket client, Socket server, StreamEnd downstream, StreamEnd upstream)
        {
            Client = client;
            Server = server;
            Downstream = downstream;
            Upstream = upstream;
        }

        public Socket Client { get; }

        public Socket Server { get; }

        public StreamEnd Downstream { get; }

        public StreamEnd Upstream { get; }

        public static async Task<World> StartAsync()
        {
            var (client, proxyDown) = await PairAsync();
            var (proxyUp, server) = await PairAsync();
            return new World(client, server, StreamEnd.OfSocket(proxyDown), StreamEnd.OfSocket(proxyUp));
        }

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            Server.Dispose();
            await Downstream.DisposeAsync();
            await Upstream.DisposeAsync();
        }

        private static async Task<(Socket Connecting, Socket Accepted)> PairAsync()
        {
            using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen();
            var connecting = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await connecting.ConnectAsync(listener.LocalEndPoint!, Ct);
            return (connecting, await listener.AcceptAsync(Ct));
        }
    }
}
