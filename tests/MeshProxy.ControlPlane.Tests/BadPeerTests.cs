using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using MeshProxy.Api.V1;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Sidecar.ControlPlaneClient;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.ControlPlane.Tests;

/// <summary>Peers that misbehave at the transport: one that never reads, one whose link goes silent.</summary>
public sealed class BadPeerTests
{
    [Fact]
    public async Task A_client_that_never_reads_is_dropped_after_the_write_timeout_and_the_others_keep_getting_pushes_promptly()
    {
        var dir = RepoPaths.NewTempDirectory();
        // ~300 KB of YAML: more than the stream's flow-control window (64 KiB) plus Kestrel's response buffer (64 KiB),
        // so the push to a client that never reads cannot complete.
        WriteBigConfig(dir);
        var writeTimeout = TimeSpan.FromSeconds(30);
        // The control plane's clock stands still unless the test moves it: "promptly" means with no time passing,
        // and the stuck client goes exactly when its write timeout has passed, however slow the machine.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var cp = await TestControlPlane.StartAsync(dir, configure: o => o with { PushWriteTimeout = writeTimeout, Time = clock, Debounce = TimeSpan.Zero });

        var good = new[] { cp.Connect("web", "shop"), cp.Connect("api", "shop"), cp.Connect("db", "shop") };
        try
        {
            foreach (var peer in good)
            {
                await peer.NextSnapshotAsync(TimeSpan.FromSeconds(15));
            }

            using var stuck = await NeverReadingClient.ConnectAsync(cp.Host.GrpcEndPoint.Port, "stuck", "shop");
            await TestControlPlane.EventuallyAsync(async () => Row(await cp.SynczAsync(), "stuck") is { } row && row.GetProperty("sentVersion").ValueKind == JsonValueKind.String, "the push to the stuck client started");
            var pushStarted = clock.GetUtcNow();

            // While its push is blocked, a change reaches every reading sidecar with the clock standing still.
            Yaml.Write(dir, "route.yaml", Yaml.Route("cart", "shop", "cart", "cart"));
            foreach (var peer in good)
            {
                var next = await peer.NextSnapshotAsync(TimeSpan.FromSeconds(15));
                Assert.Contains("host: cart", next.GetProperty("resources").EnumerateArray().First(r => r.GetProperty("kind").GetString() == "HttpRoute").GetProperty("yaml").GetString());
            }

            Assert.Equal(pushStarted, clock.GetUtcNow());
            Assert.NotNull(Row(await cp.SynczAsync(), "stuck"));

            // Just short of the write timeout it is still there; past it, its stream is closed and it leaves syncz and the gauge.
            clock.Advance(writeTimeout - TimeSpan.FromSeconds(1));
            await Task.Delay(500, TestContext.Current.CancellationToken);
            Assert.NotNull(Row(await cp.SynczAsync(), "stuck"));
            clock.Advance(TimeSpan.FromSeconds(1));
            await TestControlPlane.EventuallyAsync(async () => Row(await cp.SynczAsync(), "stuck") is null, "the stuck client dropped", TimeSpan.FromSeconds(15));
            Assert.Contains("meshproxy_controlplane_connected_sidecars 3", await cp.MetricsAsync());

            // And the rest goes on.
            Yaml.Write(dir, "route.yaml", Yaml.Route("cart", "shop", "cart", "big"));
            foreach (var peer in good)
            {
                await peer.NextSnapshotAsync(TimeSpan.FromSeconds(15));
            }
        }
        finally
        {
            foreach (var peer in good)
            {
                await peer.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task More_stuck_clients_than_push_slots_delay_the_others_by_the_slot_wait_and_no_longer()
    {
        var dir = RepoPaths.NewTempDirectory();
        // As above: a push to a client that never reads cannot complete, so each stuck client holds a push slot.
        WriteBigConfig(dir);
        var writeTimeout = TimeSpan.FromSeconds(30);
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var cp = await TestControlPlane.StartAsync(dir, configure: o => o with { PushWriteTimeout = writeTimeout, Time = clock, Debounce = TimeSpan.Zero });
        await using var good = cp.Connect("web", "shop");
        await good.NextSnapshotAsync(TimeSpan.FromSeconds(15));

        var stuck = new List<NeverReadingClient>();
        try
        {
            for (var i = 0; i < Discovery.DiscoveryService.MaxConcurrentPushes + 2; i++)
            {
                stuck.Add(await NeverReadingClient.ConnectAsync(cp.Host.GrpcEndPoint.Port, $"stuck-{i}", "shop"));
            }

            await TestControlPlane.EventuallyAsync(async () => Rows(await cp.SynczAsync()).Count(r => r.StartsWith("stuck-", StringComparison.Ordinal)) == stuck.Count, "every stuck client registered");

            // Every slot is held by a blocked write: with the clock standing still, the change waits for a slot.
            var changed = clock.GetUtcNow();
            Yaml.Write(dir, "route.yaml", Yaml.Route("cart", "shop", "cart", "cart"));
            Assert.False(await good.ReceivesWithinAsync(e => e.GetProperty("type").GetString() == "snapshot", TimeSpan.FromSeconds(2)), "pushed while every slot was held");

            // Once the slot wait has passed, it goes ahead without one, long before the stuck writes time out.
            JsonElement next = default;
            await TestControlPlane.EventuallyAsync(async () =>
            {
                clock.Advance(TimeSpan.FromMilliseconds(250));
                try
                {
                    next = await good.NextSnapshotAsync(TimeSpan.FromMilliseconds(200));
                    return true;
                }
                catch (TimeoutException)
                {
                    return false;
                }
            }, "the change reached the reading sidecar", TimeSpan.FromSeconds(30));
            var waited = clock.GetUtcNow() - changed;
            Assert.Contains("host: cart", next.GetProperty("resources").EnumerateArray().First(r => r.GetProperty("kind").GetString() == "HttpRoute").GetProperty("yaml").GetString());
            Assert.InRange(waited, DiscoveryServiceSlotWait, writeTimeout - TimeSpan.FromSeconds(1));
            Assert.Equal(stuck.Count, Rows(await cp.SynczAsync()).Count(r => r.StartsWith("stuck-", StringComparison.Ordinal)));
        }
        finally
        {
            foreach (var client in stuck)
            {
                client.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_silent_link_is_found_by_keepalive_pings_on_both_sides_and_the_sidecar_reconnects()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "s.yaml", Yaml.Service("cart", "shop", 80, 9001));
        var delay = TimeSpan.FromSeconds(1);
        var timeout = TimeSpan.FromSeconds(1);
        await using var cp = await TestControlPlane.StartAsync(dir, configure: o => o with { KeepAlivePingDelay = delay, KeepAlivePingTimeout = timeout });
        await using var relay = new TcpRelay(cp.Host.GrpcEndPoint);
        var bootstrap = InProcessSidecar.WriteBootstrap(RepoPaths.NewTempDirectory(), "web", "shop", $"http://127.0.0.1:{relay.Port}");
        await using var sidecar = await InProcessSidecar.StartAsync(bootstrap, services => services.AddSingleton(new ControlPlaneClientOptions
        {
            InitialBackoff = TimeSpan.FromMilliseconds(200),
            MaxBackoff = TimeSpan.FromSeconds(1),
            KeepAlivePingDelay = delay,
            KeepAlivePingTimeout = timeout,
        }));

        await TestControlPlane.EventuallyAsync(async () => Synced(await cp.SynczAsync()).Count == 1, "connected and SYNCED");
        var oldAddress = Synced(await cp.SynczAsync())[0];
        Assert.Equal(1, relay.Accepted);

        // The link goes silent: no bytes either way, nothing closed.
        relay.Freeze();
        var frozen = Stopwatch.StartNew();

        // The control plane's pings go unanswered: it closes the connection and forgets the sidecar.
        await TestControlPlane.EventuallyAsync(
            async () => !(await cp.SynczAsync()).EnumerateArray().Any(r => r.GetProperty("address").GetString() == oldAddress),
            "the silent sidecar dropped from syncz", TimeSpan.FromSeconds(10));
        var dropped = frozen.Elapsed;
        // Kestrel checks pings on its 1 s heartbeat, and the suite runs test projects side by side: allow a loaded machine some seconds.
        Assert.True(dropped < delay + timeout + TimeSpan.FromSeconds(6), $"dropped after {dropped.TotalMilliseconds:F0} ms");

        // The sidecar's pings go unanswered too: it gives the connection up and opens a new one (backoff), which works.
        await TestControlPlane.EventuallyAsync(
            async () => Synced(await cp.SynczAsync()) is [var address] && address != oldAddress,
            "the sidecar reconnected on a new connection", TimeSpan.FromSeconds(15));
        Assert.True(relay.Accepted >= 2);
        Assert.Contains("meshproxy_controlplane_connected_sidecars 1", await cp.MetricsAsync());
        Assert.False(sidecar.Store.Current.Stale);
        Console.WriteLine($"silent link: control plane dropped it after {dropped.TotalMilliseconds:F0} ms, sidecar back after {frozen.Elapsed.TotalMilliseconds:F0} ms");
    }

    /// <summary>DiscoveryService.PushSlotWait: how long a push waits for a slot before it goes ahead without one.</summary>
    private static readonly TimeSpan DiscoveryServiceSlotWait = TimeSpan.FromSeconds(1);

    private static void WriteBigConfig(string dir)
    {
        var padding = string.Concat(Enumerable.Range(0, 3000).Select(i => $"# padding line {i:D5} " + new string('x', 80) + "\n"));
        Yaml.Write(dir, "big.yaml", padding + Yaml.Service("big", "shop", 80, 9000));
        Yaml.Write(dir, "cart.yaml", Yaml.Service("cart", "shop", 80, 9001));
        Yaml.Write(dir, "route.yaml", Yaml.Route("cart", "shop", "cart", "big"));
    }

    private static JsonElement? Row(JsonElement syncz, string workload) =>
        syncz.EnumerateArray().Where(r => r.GetProperty("workload").GetString() == workload).Select(r => (JsonElement?)r).FirstOrDefault();

    private static List<string> Rows(JsonElement syncz) =>
        [.. syncz.EnumerateArray().Select(r => r.GetProperty("workload").GetString()!)];

    private static List<string> Synced(JsonElement syncz) =>
        [.. syncz.EnumerateArray().Where(r => r.GetProperty("status").GetString() == "SYNCED").Select(r => r.GetProperty("address").GetString()!)];

    /// <summary>
    /// Opens StreamSnapshots by hand on a raw socket (preface, SETTINGS, HEADERS, one DATA frame with the Node) and
    /// then never reads a byte: no WINDOW_UPDATE, no SETTINGS ACK, no PING answer.
    /// </summary>
    private sealed class NeverReadingClient : IDisposable
    {
        private readonly Socket _socket;

        private NeverReadingClient(Socket socket) => _socket = socket;

        public static async Task<NeverReadingClient> ConnectAsync(int port, string workload, string ns)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
            await socket.ConnectAsync(System.Net.IPAddress.Loopback, port);
            var output = new MemoryStream();
            output.Write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8);
            Frame(output, type: 4, flags: 0, stream: 0, []);
            var headers = new MemoryStream();
            foreach (var (name, value) in new[]
            {
                (":method", "POST"), (":scheme", "http"), (":path", "/meshproxy.v1.ConfigDiscovery/StreamSnapshots"), (":authority", $"127.0.0.1:{port}"),
                ("content-type", "application/grpc"), ("te", "trailers"),
            })
            {
                // HPACK literal header field without indexing, new name, no Huffman coding (RFC 7541 6.2.2).
                headers.WriteByte(0);
                headers.WriteByte((byte)name.Length);
                headers.Write(Encoding.ASCII.GetBytes(name));
                headers.WriteByte((byte)value.Length);
                headers.Write(Encoding.ASCII.GetBytes(value));
            }

            Frame(output, type: 1, flags: 0x4, stream: 1, headers.ToArray());
            var request = new SnapshotRequest { Node = new Node { Workload = workload, Namespace = ns, ServiceAccount = workload, InstanceId = $"{workload}-raw.{ns}" } }.ToByteArray();
            var message = new byte[5 + request.Length];
            BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(1), (uint)request.Length);
            request.CopyTo(message, 5);
            Frame(output, type: 0, flags: 0, stream: 1, message);
            await socket.SendAsync(output.ToArray());
            return new NeverReadingClient(socket);
        }

        public void Dispose() => _socket.Dispose();

        private static void Frame(Stream output, byte type, byte flags, int stream, byte[] payload)
        {
            Span<byte> header = stackalloc byte[9];
            header[0] = (byte)(payload.Length >> 16);
            header[1] = (byte)(payload.Length >> 8);
            header[2] = (byte)payload.Length;
            header[3] = type;
            header[4] = flags;
            BinaryPrimitives.WriteInt32BigEndian(header[5..], stream);
            output.Write(header);
            output.Write(payload);
        }
    }
}
