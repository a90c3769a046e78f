using System.Text;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>
/// Issue 19 item 7 (security review): a request the sidecar cannot forward because of the caller's own bytes
/// (here a header value with UTF-8 bytes, which Kestrel accepts and the upstream HttpClient refuses to
/// encode) is answered 400 DPE, is not retried and never counts against the upstream: before the fix six
/// such requests were answered 503 UC, retried, and ejected healthy endpoints.
/// </summary>
public sealed class ClientCausedFailureTests
{
    /// <summary>A GET whose <c>x-name</c> header carries "café" as UTF-8 bytes, on a connection of its own.</summary>
    private static byte[] NonAsciiRequest(string host, string path = "/x") =>
        [.. Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: {host}\r\nx-name: caf"), 0xC3, 0xA9,
         .. Encoding.ASCII.GetBytes("\r\nConnection: close\r\n\r\n")];

    private static async Task<string> SendRawAsync(System.Net.IPEndPoint listener, byte[] request)
    {
        await using var raw = await RawHttp.ConnectAsync(listener);
        await raw.SendAsync(request);
        return await raw.ReadUntilAsync("\0"); // never sent: reads until the sidecar closes (Connection: close)
    }

    [Fact]
    public async Task Six_requests_with_a_non_ascii_header_are_answered_400_DPE_and_eject_no_healthy_endpoint()
    {
        await using var a = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        await using var b = await ChaosBackend.StartAsync(ChaosBackend.Ok);

        // A detector as strict as can be (two consecutive gateway errors, all endpoints ejectable) and a
        // route that retries resets: before the fix, each request was a reset, retried on the other endpoint.
        await using var chaos = await Chaos.StartAsync([a.Port, b.Port],
            Chaos.Route("{ attempts: 2, retryOn: \"reset,connect-failure,5xx\" }") + Chaos.Policy(
                "loadBalancer: { simple: ROUND_ROBIN }",
                "outlierDetection: { consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100 }"));

        for (var i = 0; i < 6; i++)
        {
            var response = await SendRawAsync(chaos.Sidecar.Outbound, NonAsciiRequest("svc"));
            Assert.StartsWith("HTTP/1.1 400 ", response, StringComparison.Ordinal);
            Assert.Contains("x-meshproxy-response-flags: DPE\r\n", response, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("x-name", response, StringComparison.Ordinal); // the body names the header at fault
        }

        // Nothing reached either backend, nothing was retried, nobody was ejected.
        Assert.Equal(0, a.Received + b.Received);
        var health = await chaos.HealthAsync();
        Assert.Equal(0, health.GetProperty("retries").GetInt64());
        Assert.Equal(0, health.GetProperty("ejectionsTotal").GetInt64());
        Assert.Empty(await chaos.EjectedAsync());

        // Both endpoints still serve.
        for (var i = 0; i < 4; i++)
        {
            using var ok = await chaos.SendAsync(HttpMethod.Get, "/x");
            Assert.Equal(System.Net.HttpStatusCode.OK, ok.StatusCode);
        }

        Assert.Equal(2, a.Received);
        Assert.Equal(2, b.Received);

        using var client = new HttpClient();
        var metrics = await Exposition.ScrapeAsync(client, chaos.Sidecar.Stats);
        Assert.Equal(6, metrics.Sum("istio_requests_total", ("response_code", "400"), ("response_flags", "DPE")));
    }

    [Fact]
    public async Task Inbound_a_non_ascii_header_the_app_cannot_be_sent_is_answered_400_DPE()
    {
        await using var app = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("server", app.Port));

        var response = await SendRawAsync(sidecar.Inbound, NonAsciiRequest("server"));

        Assert.StartsWith("HTTP/1.1 400 ", response, StringComparison.Ordinal);
        Assert.Contains("x-meshproxy-response-flags: DPE\r\n", response, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, app.Received);
    }

    [Fact]
    public async Task On_egress_a_non_ascii_header_is_answered_400_DPE_not_503_UF()
    {
        await using var external = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", ClosedPort.Next()).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: meshproxy-system }
            spec: { outboundTrafficPolicy: { mode: ALLOW_ANY } }
            """));

        var response = await SendRawAsync(sidecar.Outbound, NonAsciiRequest($"localhost:{external.Port}"));

        Assert.StartsWith("HTTP/1.1 400 ", response, StringComparison.Ordinal);
        Assert.Contains("x-meshproxy-response-flags: DPE\r\n", response, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, external.Received);

        // The same request in ASCII goes out.
        var fine = await SendRawAsync(sidecar.Outbound, Encoding.ASCII.GetBytes($"GET /x HTTP/1.1\r\nHost: localhost:{external.Port}\r\nx-name: cafe\r\nConnection: close\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 200 ", fine, StringComparison.Ordinal);
    }
}
