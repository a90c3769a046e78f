using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>
/// The access log's upstream_service_time, through two sidecars to a backend that holds back its
/// response headers and then its body by known times: the value must cover the first wait and not the second.
/// </summary>
public sealed class UpstreamServiceTimeTests
{
    private const int HeaderDelayMs = 300;
    private const int ClockSlackMs = 10;
    // Long beside the header delay so that "ended by the headers, not the body" is told apart on a loaded 2-core
    // machine without an upper bound on the header time itself (which fails whenever the sidecar is scheduled late).
    private const int BodyDelayMs = 3000;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Is_the_time_to_the_upstreams_headers_on_both_sides_and_null_for_local_replies()
    {
        var dir = Directory.CreateTempSubdirectory("meshproxy-ust");
        var storeLog = Path.Combine(dir.FullName, "store.log");
        var billingLog = Path.Combine(dir.FullName, "billing.log");
        await using var app = SlowHeadersBackend.Start();
        await using var billing = await TestSidecar.StartAsync(new MeshYaml("billing", app.Port).Raw(TelemetryMesh.MeshConfig(billingLog)));
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1)
            .Service("billing", 80, "HTTP", billing.Inbound.Port)
            .Service("direct", 80, "HTTP", app.Port)
            .Service("refusing", 80, "HTTP", ClosedPort.Next())
            .Raw(TelemetryMesh.MeshConfig(storeLog)));
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false });

        // Outbound straight to the backend, and inbound in front of it: both measure the backend's header delay.
        var direct = await SendAsync(client, store, "direct");
        AssertHeaderTime(await AccessLogTests.WaitForLineAsync(storeLog, direct), "outbound");
        var chained = await SendAsync(client, store, "billing");
        var inbound = await AccessLogTests.WaitForLineAsync(billingLog, chained);
        AssertHeaderTime(inbound, "inbound");

        // Outbound through the billing sidecar, whose upstream is that sidecar: the inbound sidecar passes
        // the app's headers on when they arrive, not with the first body bytes, so this too is the header time.
        AssertHeaderTime(await AccessLogTests.WaitForLineAsync(storeLog, chained), "outbound");

        // Local replies: no service (egress denied, NR) and a refused connection (UF, retried): no upstream answered.
        foreach (var (host, code, flag) in new[] { ("nowhere", 403, "NR"), ("refusing", 503, "UF") })
        {
            var localId = $"ust-{flag}-" + Guid.NewGuid().ToString("N");
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(store.OutboundUri, "/x"));
            request.Headers.Host = host;
            request.Headers.Add("x-request-id", localId);
            using var response = await client.SendAsync(request, Ct);
            Assert.Equal(code, (int)response.StatusCode);
            var line = await AccessLogTests.WaitForLineAsync(storeLog, localId);
            Assert.StartsWith(flag, line.GetProperty("response_flags").GetString(), StringComparison.Ordinal);
            Assert.Equal(JsonValueKind.Null, line.GetProperty("upstream_service_time").ValueKind);
        }

        dir.Delete(recursive: true);
    }

    private static async Task<string> SendAsync(HttpClient client, TestSidecar store, string host)
    {
        var id = $"ust-{host}-" + Guid.NewGuid().ToString("N");
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(store.OutboundUri, "/slow"));
        request.Headers.Host = host;
        request.Headers.Add("x-request-id", id);
        using var response = await client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("slow", await response.Content.ReadAsStringAsync(Ct));
        return id;
    }

    /// <summary>At least the header delay; short of the duration by about the body delay (the headers, not the body, end it).</summary>
    private static void AssertHeaderTime(JsonElement line, string direction)
    {
        Assert.Equal(direction, line.GetProperty("direction").GetString());
        var serviceTime = line.GetProperty("upstream_service_time").GetInt64();
        var duration = line.GetProperty("duration").GetInt64();
        // A few ms of slack below: the backend's Task.Delay can fire a little early against the sidecar's
        // clock, and both figures are whole milliseconds (seen: 297 for a 300 ms delay).
        Assert.True(serviceTime >= HeaderDelayMs - ClockSlackMs, $"{direction}: upstream_service_time {serviceTime} ms");
        Assert.True(duration >= HeaderDelayMs + BodyDelayMs - ClockSlackMs, $"{direction}: duration {duration} ms");
        // Ended by the headers, not the body: well short of the duration. (Not "duration - body delay": on a
        // loaded machine the sidecar may notice the headers late, which shortens the gap it then sees.)
        Assert.True(serviceTime < duration - (BodyDelayMs / 2), $"{direction}: upstream_service_time {serviceTime} ms, duration {duration} ms");
    }

    /// <summary>An HTTP/1.1 server on a real socket that waits before its status line and again before its body.</summary>
    private sealed class SlowHeadersBackend : IAsyncDisposable
    {
        private readonly TcpListener _listener;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _accepting;

        private SlowHeadersBackend(TcpListener listener)
        {
            _listener = listener;
            _accepting = AcceptAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public static SlowHeadersBackend Start()
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return new SlowHeadersBackend(listener);
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting.ContinueWith(_ => { }, TaskScheduler.Default);
            _stop.Dispose();
        }

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                var socket = await _listener.AcceptSocketAsync(_stop.Token);
                _ = ServeAsync(socket);
            }
        }

        private async Task ServeAsync(Socket socket)
        {
            using var stream = new NetworkStream(socket, ownsSocket: true);
            var buffer = new byte[8192];
            var filled = 0;
            try
            {
                while (true)
                {
                    var end = Encoding.ASCII.GetString(buffer, 0, filled).IndexOf("\r\n\r\n", StringComparison.Ordinal);
                    if (end < 0)
                    {
                        var read = await stream.ReadAsync(buffer.AsMemory(filled), _stop.Token);
                        if (read == 0)
                        {
                            return;
                        }

                        filled += read;
                        continue;
                    }

                    // A GET without a body: drop its head and answer.
                    Buffer.BlockCopy(buffer, end + 4, buffer, 0, filled - end - 4);
                    filled -= end + 4;
                    await Task.Delay(HeaderDelayMs, _stop.Token);
                    await stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n"u8.ToArray(), _stop.Token);
                    await stream.FlushAsync(_stop.Token);
                    await Task.Delay(BodyDelayMs, _stop.Token);
                    await stream.WriteAsync("slow"u8.ToArray(), _stop.Token);
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
            {
            }
        }
    }
}
