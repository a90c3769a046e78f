using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

public sealed class HttpProxyingTests(TwoSidecarMesh mesh) : IClassFixture<TwoSidecarMesh>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Http11_request_travels_outbound_then_inbound_to_the_app()
    {
        using var response = await mesh.Client.SendAsync(mesh.ToBilling(HttpMethod.Get, "/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal("billing", body.GetProperty("service").GetString());
        Assert.Equal("billing", body.GetProperty("host").GetString());
        Assert.Matches("^[0-9a-f-]{36}$", body.GetProperty("requestId").GetString());
        Assert.Equal("127.0.0.1", body.GetProperty("forwardedFor").GetString());
        Assert.Equal("http", body.GetProperty("forwardedProto").GetString());
    }

    [Fact]
    public async Task A_request_id_sent_by_the_caller_is_kept_end_to_end()
    {
        using var request = mesh.ToBilling(HttpMethod.Get, "/hello");
        request.Headers.Add("x-request-id", "caller-chose-this");
        using var response = await mesh.Client.SendAsync(request, Ct);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal("caller-chose-this", body.GetProperty("requestId").GetString());
    }

    [Fact]
    public async Task A_forged_client_certificate_header_never_reaches_the_app()
    {
        using var request = mesh.ToBilling(HttpMethod.Get, "/hello");
        request.Headers.Add("x-forwarded-client-cert", "By=spiffe://evil;URI=spiffe://cluster.local/ns/x/sa/admin");
        using var response = await mesh.Client.SendAsync(request, Ct);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal(string.Empty, body.GetProperty("clientCert").GetString());
    }

    [Fact]
    public async Task Hop_by_hop_headers_are_removed()
    {
        await using var raw = await RawHttp.ConnectAsync(mesh.Store.Outbound);
        await raw.SendAsync("GET /hello HTTP/1.1\r\nHost: billing\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nUpgrade: h2c\r\nx-end-to-end: yes\r\n\r\n");
        var text = await raw.ReadUntilAsync("}}");
        Assert.Contains("HTTP/1.1 200", text, StringComparison.Ordinal);
        Assert.Contains("\"x-end-to-end\":\"yes\"", text, StringComparison.Ordinal);
        Assert.DoesNotContain("\"keep-alive\"", text, StringComparison.Ordinal);
        Assert.DoesNotContain("proxy-connection", text, StringComparison.Ordinal);
        Assert.DoesNotContain("\"te\"", text, StringComparison.Ordinal);
        Assert.DoesNotContain("\"upgrade\"", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Keep_alive_serves_several_requests_on_one_connection()
    {
        await using var raw = await RawHttp.ConnectAsync(mesh.Store.Outbound);
        for (var i = 0; i < 3; i++)
        {
            await raw.SendAsync($"GET /status/20{i} HTTP/1.1\r\nHost: billing\r\n\r\n");
            var text = await raw.ReadUntilAsync($"billing answered 20{i}\n");
            Assert.StartsWith($"HTTP/1.1 20{i}", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Expect_100_continue_is_honoured_before_the_body_is_sent()
    {
        await using var raw = await RawHttp.ConnectAsync(mesh.Store.Outbound);
        await raw.SendAsync("POST /echo HTTP/1.1\r\nHost: billing\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
        var interim = await raw.ReadUntilAsync("\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 100 Continue", interim, StringComparison.Ordinal);
        await raw.SendAsync("hello world");
        var final = await raw.ReadUntilAsync("hello world");
        Assert.Contains("HTTP/1.1 200", final, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Chunked_request_body_is_streamed_through()
    {
        var payload = RandomNumberGenerator.GetBytes(300_000);
        using var request = mesh.ToBilling(HttpMethod.Post, "/echo");
        request.Content = new StreamContent(new MemoryStream(payload)); // no length: chunked
        request.Headers.TransferEncodingChunked = true;
        using var response = await mesh.Client.SendAsync(request, Ct);
        Assert.Equal(payload, await response.Content.ReadAsByteArrayAsync(Ct));
    }

    [Fact]
    public async Task Http2_with_prior_knowledge_is_served_on_the_outbound_port()
    {
        using var request = mesh.ToBilling(HttpMethod.Get, "/hello");
        request.Version = HttpVersion.Version20;
        request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
        using var response = await mesh.Client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version20, response.Version);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal("billing", body.GetProperty("service").GetString());
    }

    [Fact]
    public async Task An_unknown_destination_gets_403_with_the_NR_flag_at_once()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(mesh.Store.OutboundUri, "/x"));
        request.Headers.Host = "no-such-service.example";
        using var response = await mesh.Client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode); // REGISTRY_ONLY egress denial (Egress/README.md)
        Assert.Equal("NR", response.Headers.GetValues("x-meshproxy-response-flags").Single());
        Assert.Contains("no-such-service.example", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_refusing_upstream_gets_503_UF_and_the_proxy_goes_on()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(mesh.Store.OutboundUri, "/x"));
        request.Headers.Host = "refusing";
        using var response = await mesh.Client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        // Istio's default retries (connect-failure) were tried and exhausted: UF with URX, as Envoy logs it.
        Assert.Equal("UF,URX", response.Headers.GetValues("x-meshproxy-response-flags").Single());
        Assert.Contains("upstream connect error", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);

        using var after = await mesh.Client.SendAsync(mesh.ToBilling(HttpMethod.Get, "/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task An_upstream_that_resets_before_answering_gets_503_UC_and_the_proxy_goes_on()
    {
        // A backend that reads the request and slams the connection shut (RST, no response).
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var resets = Task.Run(async () =>
        {
            using var socket = await listener.AcceptSocketAsync(Ct);
            await socket.ReceiveAsync(new byte[4096], Ct);
            socket.LingerState = new System.Net.Sockets.LingerOption(true, 0);
            socket.Close();
        }, Ct);
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("flaky", 80, "HTTP", ((IPEndPoint)listener.LocalEndpoint).Port));

        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, "/x"));
        request.Headers.Host = "flaky";
        using var response = await mesh.Client.SendAsync(request, Ct);
        await resets;
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("UC", response.Headers.GetValues("x-meshproxy-response-flags").Single());

        using var after = await mesh.Client.SendAsync(mesh.ToBilling(HttpMethod.Get, "/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task Inbound_app_down_gets_503_UF()
    {
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("lonely", ClosedPort.Next()));
        using var response = await mesh.Client.GetAsync(new Uri(sidecar.InboundUri, "/"), Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("UF", response.Headers.GetValues("x-meshproxy-response-flags").Single());
    }

    [Fact]
    public async Task A_malformed_request_line_gets_400_and_the_proxy_keeps_serving()
    {
        await using (var raw = await RawHttp.ConnectAsync(mesh.Store.Outbound))
        {
            await raw.SendAsync("GARBAGE\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 400", await raw.ReadUntilAsync("\r\n\r\n"), StringComparison.Ordinal);
        }

        await using (var raw = await RawHttp.ConnectAsync(mesh.Store.Outbound))
        {
            await raw.SendAsync("GET / HTTP/1.1\r\nHost: billing\r\nbad header line\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 400", await raw.ReadUntilAsync("\r\n\r\n"), StringComparison.Ordinal);
        }

        await using (var raw = await RawHttp.ConnectAsync(mesh.Store.Outbound))
        {
            // A version that is not HTTP/1.x: Kestrel says so with 505, which RFC 9110 prescribes.
            await raw.SendAsync("GET / HTTP/7.0\r\nHost: billing\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 505", await raw.ReadUntilAsync("\r\n\r\n"), StringComparison.Ordinal);
        }

        await using (var raw = await RawHttp.ConnectAsync(mesh.Billing.Inbound))
        {
            await raw.SendAsync("GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 400", await raw.ReadUntilAsync("\r\n\r\n"), StringComparison.Ordinal);
        }

        using var after = await mesh.Client.SendAsync(mesh.ToBilling(HttpMethod.Get, "/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task Oversized_headers_get_431_and_the_proxy_keeps_serving()
    {
        await using (var raw = await RawHttp.ConnectAsync(mesh.Store.Outbound))
        {
            await raw.SendAsync($"GET / HTTP/1.1\r\nHost: billing\r\nx-big: {new string('a', 70 * 1024)}\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 431", await raw.ReadUntilAsync("\r\n\r\n"), StringComparison.Ordinal);
        }

        await using (var raw = await RawHttp.ConnectAsync(mesh.Store.Outbound))
        {
            await raw.SendAsync($"GET /{new string('p', 17 * 1024)} HTTP/1.1\r\nHost: billing\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 414", await raw.ReadUntilAsync("\r\n\r\n"), StringComparison.Ordinal);
        }

        using var after = await mesh.Client.SendAsync(mesh.ToBilling(HttpMethod.Get, "/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task A_client_that_connects_and_says_nothing_does_not_block_others()
    {
        using var silent = new System.Net.Sockets.TcpClient();
        await silent.ConnectAsync(mesh.Store.Outbound, Ct);
        using var response = await mesh.Client.SendAsync(mesh.ToBilling(HttpMethod.Get, "/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }
}
