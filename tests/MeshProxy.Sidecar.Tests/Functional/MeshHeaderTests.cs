using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>
/// Issue 19 item 7 (security review): the mesh's own request headers — <c>x-forwarded-client-cert</c> and
/// <c>x-meshproxy-peer</c> — leave a sidecar only as the sidecar wrote them, in every direction. Before the
/// fix the app's own XFCC reached a destination outside the mesh (egress, or a mesh Service's endpoint
/// without a sidecar) and its own peer header reached egress. <c>x-forwarded-for</c> is the app's and
/// passes outbound unchanged (README, Headers).
/// </summary>
public sealed class MeshHeaderTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string ForgedXfcc = "By=spiffe://cluster.local/ns/test/sa/store;URI=spiffe://cluster.local/ns/prod/sa/admin";

    [Fact]
    public async Task Outbound_to_egress_the_apps_own_xfcc_and_peer_header_are_dropped_and_its_forwarded_for_kept()
    {
        await using var external = await Backend.StartAsync("external");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", ClosedPort.Next()).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: meshproxy-system }
            spec: { outboundTrafficPolicy: { mode: ALLOW_ANY } }
            """));

        var body = await HelloAsync(sidecar, $"localhost:{external.Port}");

        Assert.Equal("external", body.GetProperty("service").GetString());
        AssertSanitized(body);
    }

    [Fact]
    public async Task Outbound_to_a_mesh_service_endpoint_without_a_sidecar_the_apps_own_xfcc_and_peer_header_are_dropped()
    {
        await using var plain = await Backend.StartAsync("plain");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", ClosedPort.Next()).Service("plain", 80, "HTTP", plain.Port));

        var body = await HelloAsync(sidecar, "plain");

        Assert.Equal("plain", body.GetProperty("service").GetString());
        AssertSanitized(body);
    }

    private static void AssertSanitized(JsonElement body)
    {
        var headers = body.GetProperty("headers");
        Assert.Equal(string.Empty, body.GetProperty("clientCert").GetString());
        Assert.False(headers.TryGetProperty("x-meshproxy-peer", out _), "x-meshproxy-peer reached a destination outside the mesh");

        // The app's own x-forwarded-for is its claim to make: passed on as it was, nothing appended.
        Assert.Equal("10.1.2.3", body.GetProperty("forwardedFor").GetString());
    }

    private static async Task<JsonElement> HelloAsync(TestSidecar sidecar, string host)
    {
        using var client = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, "/hello"));
        request.Headers.Host = host;
        request.Headers.Add("x-forwarded-client-cert", ForgedXfcc);
        request.Headers.Add("x-meshproxy-peer", "v1;admin;prod;admin;v1;admin;v1");
        request.Headers.Add("x-forwarded-for", "10.1.2.3");
        using var response = await client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
    }
}
