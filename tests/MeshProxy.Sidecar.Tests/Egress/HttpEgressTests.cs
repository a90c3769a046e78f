using System.Net;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Egress;

/// <summary>Plain HTTP egress through an in-process sidecar used as the app's HTTP endpoint, to a real server named 'localhost'.</summary>
public sealed class HttpEgressTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Registry_only_forwards_a_host_a_policy_allows_and_refuses_another_port_with_403()
    {
        await using var external = await Backend.StartAsync("external");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 1).Raw($$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: EgressPolicy
            metadata: { name: external, namespace: test }
            spec:
              hosts: [localhost]
              ports: [{ number: {{external.Port}}, protocol: HTTP }]
            """));
        using var client = new HttpClient();

        using (var allowed = Request(sidecar, $"localhost:{external.Port}"))
        using (var response = await client.SendAsync(allowed, Ct))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains("\"external\"", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        }

        using (var denied = Request(sidecar, $"localhost:{external.Port + 1}"))
        using (var response = await client.SendAsync(denied, Ct))
        {
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Equal("NR", response.Headers.GetValues("x-meshproxy-response-flags").Single());
            Assert.Contains($"no EgressPolicy allows localhost:{external.Port + 1}", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        }

        var metrics = await Exposition.ScrapeAsync(client, sidecar.Stats);
        Assert.Equal(1, Exposition.Sum(metrics, "meshproxy_egress_denied_total", ("protocol", "http"), ("reason", "not_allowed")));

        // The allowed request is reported against the policy that let it out, the denied one against BlackHoleCluster.
        Assert.Equal(1, Exposition.Sum(metrics, "istio_requests_total", ("response_code", "200"),
            ("destination_service_name", "external"), ("destination_service_namespace", "test")));
        Assert.Equal(1, Exposition.Sum(metrics, "istio_requests_total", ("response_code", "403"), ("destination_service_name", "BlackHoleCluster")));
    }

    [Fact]
    public async Task Allow_any_passes_a_host_no_policy_names()
    {
        await using var external = await Backend.StartAsync("external");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 1).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: meshproxy-system }
            spec: { outboundTrafficPolicy: { mode: ALLOW_ANY } }
            """));
        using var client = new HttpClient();
        using var request = Request(sidecar, $"localhost:{external.Port}");
        using var response = await client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("\"external\"", await response.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);

        var metrics = await Exposition.ScrapeAsync(client, sidecar.Stats);
        Assert.Equal(1, Exposition.Sum(metrics, "istio_requests_total", ("response_code", "200"), ("destination_service_name", "PassthroughCluster")));
    }

    private static HttpRequestMessage Request(TestSidecar sidecar, string host)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, "/hello"));
        request.Headers.Host = host;
        return request;
    }
}
