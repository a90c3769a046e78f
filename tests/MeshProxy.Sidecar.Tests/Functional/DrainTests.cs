using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshProxy.Sidecar.Tests.Identity;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>
/// Drain as real processes see it: SIGTERM, then clients told to go (Connection: close, GOAWAY) before any
/// connection of theirs is closed, so that a drain costs no request (README, Operations: Shutdown).
/// </summary>
public sealed class DrainTests
{
    private const int SigTerm = 15;
    private const int Sigterms = 5;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// store app -> store sidecar (outbound, mTLS) -> billing sidecar A or B (inbound) -> app a or b, all processes
    /// but the apps. Eight clients POST back to back on keep-alive connections while A is sent SIGTERM five times,
    /// restarted on its port after each exit. Before the drain notice, A closed the store sidecar's idle pooled
    /// connections at once and about one POST per SIGTERM written on one of them failed (503 UC).
    /// </summary>
    [Fact]
    public async Task Sigterm_of_an_upstream_sidecar_under_keep_alive_post_load_fails_no_request()
    {
        var pki = MeshPki.Shared;
        var root = Directory.CreateTempSubdirectory("meshproxy-drain-").FullName;
        var billingFiles = pki.WriteFiles(Path.Combine(root, "billing"), "billing", "rootA");
        var storeFiles = pki.WriteFiles(Path.Combine(root, "store"), "store", "rootA");
        await using var appA = await Backend.StartAsync("a");
        await using var appB = await Backend.StartAsync("b");
        // A takes its inbound port back at every restart; the port stays reserved meanwhile (see PortReservation).
        using var aReservation = new PortReservation();
        var aPort = aReservation.Port;
        MeshYaml BillingA() => new MeshYaml("billing", appA.Port, drain: "1s", inboundPort: aPort, tls: billingFiles).Mtls("STRICT");
        var a = await SidecarProcess.StartAsync(BillingA());
        try
        {
            await using var b = await SidecarProcess.StartAsync(new MeshYaml("billing", appB.Port, drain: "1s", tls: billingFiles).Mtls("STRICT"));
            // While A is down between two SIGTERMs, half the first tries meet a refused connection and are retried
            // on B; the budget is widened so that no retry this test is not about is refused. Passive health (on by
            // default) is off: it would eject A while it restarts, for longer at each ejection, and the test needs A
            // back in rotation after every restart.
            await using var store = await SidecarProcess.StartAsync(
                new MeshYaml("store", 1, tls: storeFiles).MeshService("billing", 80, "HTTP", "billing", null, aPort, b.Inbound.Port).Raw("""
                    apiVersion: meshproxy.io/v1alpha1
                    kind: DestinationPolicy
                    metadata: { name: billing, namespace: test }
                    spec:
                      host: billing
                      retryBudget: { percent: 100, minRetriesPerSecond: 1000 }
                      outlierDetection: { enabled: false }
                    """));

            var failures = new ConcurrentQueue<string>();
            var servedByA = 0;
            var total = 0;
            using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) })
            {
                Timeout = TimeSpan.FromSeconds(30),
            };
            using var stopLoad = new CancellationTokenSource();
            var load = Enumerable.Range(0, 8).Select(worker => Task.Run(async () =>
            {
                for (var n = 0; !stopLoad.IsCancellationRequested; n++)
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, $"http://{store.Outbound}/charges")
                    {
                        Content = new StringContent($$"""{"worker":{{worker}},"n":{{n}},"amount":42}""", Encoding.UTF8, "application/json"),
                    };
                    request.Headers.Host = "billing";
                    try
                    {
                        using var response = await client.SendAsync(request, CancellationToken.None);
                        var body = await response.Content.ReadAsStringAsync(CancellationToken.None);
                        Interlocked.Increment(ref total);
                        if (response.StatusCode != HttpStatusCode.Created)
                        {
                            var flags = response.Headers.TryGetValues("x-meshproxy-response-flags", out var v) ? string.Join(",", v) : "-";
                            failures.Enqueue($"{(int)response.StatusCode} {flags}: {body.Trim()}");
                        }
                        else if (body.StartsWith("a ", StringComparison.Ordinal))
                        {
                            Interlocked.Increment(ref servedByA);
                        }
                    }
                    catch (HttpRequestException ex)
                    {
                        failures.Enqueue("client: " + ex.Message);
                    }
                }
            }, CancellationToken.None)).ToList();

            for (var i = 0; i < Sigterms; i++)
            {
                // A carries its share of the load (its pooled connections in use) when the signal comes.
                var before = Volatile.Read(ref servedByA);
                var warm = Stopwatch.StartNew();
                while (Volatile.Read(ref servedByA) < before + 50)
                {
                    Assert.True(warm.Elapsed < TimeSpan.FromSeconds(60), $"SIGTERM {i + 1}: A served {Volatile.Read(ref servedByA) - before} requests in 60 s");
                    await Task.Delay(50, Ct);
                }

                a.Process.Signal(SigTerm);
                Assert.Equal(0, await a.Process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
                await a.DisposeAsync();
                a = await SidecarProcess.StartAsync(BillingA());
            }

            await stopLoad.CancelAsync();
            await Task.WhenAll(load);
            var kinds = failures.GroupBy(f => f.Split(':')[0]).Select(g => $"{g.Count()} x {g.Key} (e.g. {g.First()})");
            Assert.True(failures.IsEmpty, $"{failures.Count} of {total} requests failed over {Sigterms} SIGTERMs:\n{string.Join("\n", kinds)}");
            Assert.True(total > 500, $"only {total} requests");
        }
        finally
        {
            await a.DisposeAsync();
        }
    }

    /// <summary>
    /// The app's keep-alive connection to its sidecar's outbound listener: after SIGTERM its next response says
    /// Connection: close, and only then is the connection closed. Before, responses during the drain said nothing
    /// and the listener closed the connection at the end of the drain, racing the app's next request.
    /// </summary>
    [Fact]
    public async Task During_the_drain_the_apps_keep_alive_connection_is_told_to_close_before_it_is_closed()
    {
        await using var app = await Backend.StartAsync("billing");
        await using var sidecar = await SidecarProcess.StartAsync(new MeshYaml("store", 1, drain: "4s").Service("billing", 80, "HTTP", app.Port));
        await using var connection = await RawHttp.ConnectAsync(sidecar.Outbound);
        const string Request = "GET /status/200 HTTP/1.1\r\nHost: billing\r\n\r\n";

        await connection.SendAsync(Request);
        var first = ResponseHead(await connection.ReadUntilAsync("answered 200\n"));
        Assert.StartsWith("HTTP/1.1 200", first, StringComparison.Ordinal);
        Assert.DoesNotContain("Connection: close", first, StringComparison.OrdinalIgnoreCase);

        sidecar.Process.Signal(SigTerm);
        await sidecar.Process.WaitForLineAsync("Draining", TimeSpan.FromSeconds(10));

        // Still inside the 4 s drain: the connection is open and serves, and says it will close.
        var clock = Stopwatch.StartNew();
        await connection.SendAsync(Request);
        var rest = await connection.ReadUntilAsync("\u0000", TimeSpan.FromSeconds(10)); // to end of stream
        var second = ResponseHead(rest);
        Assert.StartsWith("HTTP/1.1 200", second, StringComparison.Ordinal);
        Assert.Contains("Connection: close", second, StringComparison.OrdinalIgnoreCase);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"the connection closed {clock.Elapsed} after the request, not right after its response");
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>
    /// HTTP/2 (h2c) connections of both proxy listeners get GOAWAY when the drain begins, well within the drain
    /// period; the app's next call to outbound is served over a new connection, which gets its own GOAWAY.
    /// Before, no connection got GOAWAY until the listeners closed at the drain's end.
    /// </summary>
    [Fact]
    public async Task During_the_drain_http2_connections_get_goaway_and_clients_move_to_new_ones()
    {
        await using var app = await Backend.StartAsync("billing");
        await using var sidecar = await SidecarProcess.StartAsync(new MeshYaml("billing", app.Port, drain: "6s").Service("billing", 80, "HTTP", app.Port));
        var connections = new ConcurrentQueue<WatchedConnection>();
        using var client = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            ConnectCallback = async (context, ct) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(context.DnsEndPoint, ct);
                var watched = new WatchedConnection(context.DnsEndPoint.Port, socket);
                connections.Enqueue(watched);
                return watched;
            },
        });

        async Task<HttpStatusCode> CallAsync(IPEndPoint listener)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{listener}/hello") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
            request.Headers.Host = "billing";
            using var response = await client.SendAsync(request, Ct);
            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await CallAsync(sidecar.Outbound));
        Assert.Equal(HttpStatusCode.OK, await CallAsync(sidecar.Inbound));
        var outbound = connections.Single(c => c.Port == sidecar.Outbound.Port);
        var inbound = connections.Single(c => c.Port == sidecar.Inbound.Port);

        sidecar.Process.Signal(SigTerm);
        var clock = Stopwatch.StartNew();
        while (!(outbound.SawGoAway && inbound.SawGoAway))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4),
                $"within 4 s of SIGTERM (drain 6 s), GOAWAY on the outbound connection: {outbound.SawGoAway}, on the inbound one: {inbound.SawGoAway}");
            await Task.Delay(50, Ct);
        }

        // Still within the drain: the app's next call is served, over a new connection.
        Assert.Equal(HttpStatusCode.OK, await CallAsync(sidecar.Outbound));
        var second = connections.Where(c => c.Port == sidecar.Outbound.Port).ToList();
        Assert.Equal(2, second.Count);

        // A connection opened during the drain gets its GOAWAY with its first stream.
        while (!second[1].SawGoAway)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "no GOAWAY on the connection opened during the drain");
            await Task.Delay(50, Ct);
        }
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>The first response head in <paramref name="text"/> (what is left of an earlier response's chunked ending is skipped).</summary>
    private static string ResponseHead(string text)
    {
        var start = Math.Max(0, text.IndexOf("HTTP/1.", StringComparison.Ordinal));
        var end = text.IndexOf("\r\n\r\n", start, StringComparison.Ordinal);
        return end < 0 ? text[start..] : text[start..end];
    }

    /// <summary>A client connection that notes what the server did: a GOAWAY frame (type 7) among the frames it sent, and closing.</summary>
    private sealed class WatchedConnection(int port, Socket socket) : NetworkStream(socket, ownsSocket: true)
    {
        private readonly List<byte> _pending = []; // a client connection: the server's bytes are frames from the first

        public int Port { get; } = port;

        public bool SawGoAway { get; private set; }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await base.ReadAsync(buffer, cancellationToken);
            Observe(buffer.Span[..n]);
            return n;
        }

        public override int Read(Span<byte> buffer)
        {
            var n = base.Read(buffer);
            Observe(buffer[..n]);
            return n;
        }

        private void Observe(ReadOnlySpan<byte> bytes)
        {
            lock (_pending)
            {
                _pending.AddRange(bytes.ToArray());
                while (_pending.Count >= 9)
                {
                    var length = (_pending[0] << 16) | (_pending[1] << 8) | _pending[2];
                    if (_pending.Count < 9 + length)
                    {
                        break;
                    }

                    SawGoAway |= _pending[3] == 0x7;
                    _pending.RemoveRange(0, 9 + length);
                }
            }
        }
    }
}
