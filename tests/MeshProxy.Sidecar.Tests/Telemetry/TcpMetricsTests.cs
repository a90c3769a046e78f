using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>istio_tcp_* for the streams a sidecar passes through, checked against the bytes the peers themselves counted.</summary>
public sealed class TcpMetricsTests
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(30);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_websocket_through_two_sidecars_is_counted_in_istio_tcp_bytes_as_the_ws_client_counted_them()
    {
        await using var app = await Backend.StartAsync("chat");
        await using var chat = await TestSidecar.StartAsync(new MeshYaml("chat", app.Port));
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("chat", 80, "HTTP", chat.Inbound.Port));
        using var http = new HttpClient();

        await using var client = ExternalProcess.Node("ws-client.js", $"ws://{store.Outbound}/ws", "chat");
        var result = JsonDocument.Parse(await client.WaitForLineAsync("{", PeerTimeout)).RootElement;
        Assert.False(result.TryGetProperty("error", out var error), error.ToString());
        Assert.Equal(["one", "two", "three"], result.GetProperty("echoes").EnumerateArray().Select(e => e.GetString()));
        var clientSent = result.GetProperty("frameBytesSent").GetInt64();
        var clientReceived = result.GetProperty("frameBytesReceived").GetInt64();

        // Three masked text frames and a close frame each way: more than the payloads, fewer than headers would add.
        Assert.InRange(clientSent, 30, 200);
        Assert.InRange(clientReceived, 15, 200);

        // The outbound sidecar's downstream is the ws client; the inbound sidecar's is the outbound sidecar,
        // which passed the same frames on byte for byte.
        var storeMetrics = await WaitForClosedAsync(http, store, ("reporter", "source"), ("destination_service_name", "chat"));
        Assert.Equal(clientReceived, storeMetrics.Sum("istio_tcp_sent_bytes_total", ("reporter", "source")));
        Assert.Equal(clientSent, storeMetrics.Sum("istio_tcp_received_bytes_total", ("reporter", "source")));
        Assert.Equal(1, storeMetrics.Sum("istio_tcp_connections_opened_total", ("reporter", "source")));
        var series = Assert.Single(storeMetrics.Find("istio_tcp_sent_bytes_total"));
        Assert.Equal("tcp", series.Labels["request_protocol"]);
        Assert.Equal("store", series.Labels["source_workload"]);
        Assert.Equal("chat.test.svc.cluster.local", series.Labels["destination_service"]);

        var chatMetrics = await WaitForClosedAsync(http, chat, ("reporter", "destination"));
        Assert.Equal(clientReceived, chatMetrics.Sum("istio_tcp_sent_bytes_total", ("reporter", "destination")));
        Assert.Equal(clientSent, chatMetrics.Sum("istio_tcp_received_bytes_total", ("reporter", "destination")));
        Assert.Equal("chat", Assert.Single(chatMetrics.Find("istio_tcp_received_bytes_total")).Labels["destination_workload"]);
    }

    [Fact]
    public async Task A_websocket_over_http2_extended_connect_is_counted_in_istio_tcp_bytes()
    {
        await using var app = await Backend.StartAsync("chat");
        await using var chat = await TestSidecar.StartAsync(new MeshYaml("chat", app.Port));
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("chat", 80, "HTTP", chat.Inbound.Port));
        using var http = new HttpClient();
        using var h2c = new HttpMessageInvoker(new SocketsHttpHandler());

        // RFC 8441: the WebSocket is an HTTP/2 stream opened by CONNECT with :protocol=websocket.
        using (var ws = new ClientWebSocket())
        {
            ws.Options.HttpVersion = System.Net.HttpVersion.Version20;
            ws.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
            ws.Options.SetRequestHeader("Host", "chat");
            await ws.ConnectAsync(new Uri($"ws://{store.Outbound}/ws"), h2c, Ct);
            var payload = Encoding.UTF8.GetBytes(new string('x', 1000));
            await ws.SendAsync(payload, WebSocketMessageType.Text, endOfMessage: true, Ct);
            var buffer = new byte[2000];
            var received = await ws.ReceiveAsync(buffer, Ct);
            Assert.Equal(1000, received.Count);
            await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, Ct);
        }

        // The frames inside the HTTP/2 stream: a masked 1000-byte text frame (2+2+4 header bytes) and a
        // masked empty close frame with its code (2+4+2) from the client; the echo and the close reply back.
        var storeMetrics = await WaitForClosedAsync(http, store, ("reporter", "source"));
        Assert.Equal(1008 + 8, storeMetrics.Sum("istio_tcp_received_bytes_total", ("reporter", "source")));
        Assert.InRange(storeMetrics.Sum("istio_tcp_sent_bytes_total", ("reporter", "source")), 1004 + 4, 1004 + 200);
    }

    [Fact]
    public async Task Over_mtls_an_outbound_websockets_tcp_series_names_the_destination_workload_like_its_request_metric()
    {
        await using var mesh = await Identity.MtlsMesh.StartAsync();

        await using var client = ExternalProcess.Node("ws-client.js", $"ws://{mesh.Store.Outbound}/ws", "billing");
        var result = JsonDocument.Parse(await client.WaitForLineAsync("{", PeerTimeout)).RootElement;
        Assert.False(result.TryGetProperty("error", out var error), error.ToString());
        Assert.Equal(["one", "two", "three"], result.GetProperty("echoes").EnumerateArray().Select(e => e.GetString()));

        // The destination sidecar's metadata arrives on its 101: the stream's series and the upgrade
        // request's own series must agree on who answered.
        var store = await WaitForClosedAsync(mesh.Client, mesh.Store, ("reporter", "source"));
        var request = Assert.Single(store.Find("istio_requests_total", ("reporter", "source"), ("response_code", "101")));
        foreach (var name in new[] { "istio_tcp_connections_opened_total", "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total", "istio_tcp_connections_closed_total" })
        {
            var tcp = Assert.Single(store.Find(name, ("reporter", "source")));
            Assert.Equal("billing", tcp.Labels["destination_workload"]);
            Assert.Equal("test", tcp.Labels["destination_workload_namespace"]);
            Assert.Equal("billing", tcp.Labels["destination_app"]);
            Assert.Equal("billing", tcp.Labels["destination_canonical_service"]);
            Assert.Equal(Identity.MeshPki.Id("billing"), tcp.Labels["destination_principal"]);
            Assert.Equal("unknown", tcp.Labels["connection_security_policy"]);
            foreach (var label in new[] { "destination_principal", "connection_security_policy", "destination_workload", "destination_workload_namespace", "destination_app", "destination_version", "destination_canonical_service", "destination_canonical_revision", "destination_service", "source_workload" })
            {
                Assert.True(request.Labels[label] == tcp.Labels[label], $"{name} {label}: the request's series says '{request.Labels[label]}', the stream's '{tcp.Labels[label]}'");
            }
        }

        Assert.Equal(result.GetProperty("frameBytesReceived").GetInt64(), store.Sum("istio_tcp_sent_bytes_total", ("reporter", "source")));

        // And the destination side names the caller, from the metadata on the upgrade request.
        var billing = await WaitForClosedAsync(mesh.Client, mesh.Billing, ("reporter", "destination"));
        var inbound = Assert.Single(billing.Find("istio_tcp_connections_opened_total", ("reporter", "destination")));
        Assert.Equal("store", inbound.Labels["source_workload"]);
        Assert.Equal("mutual_tls", inbound.Labels["connection_security_policy"]);
    }

    /// <summary>Scrapes until the stream matching <paramref name="match"/> has been counted closed (the forwarder has finished copying).</summary>
    internal static async Task<IReadOnlyList<Sample>> WaitForClosedAsync(HttpClient http, TestSidecar sidecar, params (string, string)[] match)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var samples = await Exposition.ScrapeAsync(http, sidecar.Stats);
            if (samples.Sum("istio_tcp_connections_closed_total", match) >= 1 || DateTime.UtcNow > deadline)
            {
                Assert.Equal(1, samples.Sum("istio_tcp_connections_closed_total", match));
                return samples;
            }

            await Task.Delay(50, Ct);
        }
    }
}
