using System.Net;
using System.Text.Json;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Samples.App;
using Microsoft.AspNetCore.Builder;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// Issue 14, finding 4: one HttpRoute to an unknown service used to reach every sidecar that got it,
/// each NACKed the whole snapshot, and every later change (an AuthorizationPolicy here) stayed
/// unapplied. The control plane now holds the route back, keeps its last good version serving, names it
/// in /debug/configz, and every other change still arrives.
/// </summary>
public sealed class HeldBackResourceTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task A_route_to_an_unknown_service_is_held_back_while_a_later_policy_change_is_applied_and_acked()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var backendA = SampleApp.Build("backend-a", 0, null, quiet: true);
        await using var backendB = SampleApp.Build("backend-b", 0, null, quiet: true);
        await using var apiApp = SampleApp.Build("api-app", 0, null, quiet: true);
        await backendA.StartAsync(ct);
        await backendB.StartAsync(ct);
        await apiApp.StartAsync(ct);

        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "services.yaml", Yaml.Docs(
            Yaml.Service("shop", "shop", 80, 1), // virtual: its route decides where requests go
            Yaml.Service("a", "shop", 80, backendA.BoundPort())));
        Yaml.Write(dir, "route.yaml", Yaml.Route("shop", "shop", "shop", "a"));
        Yaml.Write(dir, "policy.yaml", AllowOnly("/admin"));

        await using var cp = await TestControlPlane.StartAsync(dir);
        await using var api = await InProcessSidecar.StartAsync(
            InProcessSidecar.WriteBootstrap(RepoPaths.NewTempDirectory(), "api", "shop", cp.GrpcUri.ToString(), apiApp.BoundPort()));
        await TestControlPlane.EventuallyAsync(async () => await StatusAsync(cp) == "SYNCED", "the sidecar SYNCED");
        Assert.Equal("200 backend-a", await OutboundAsync(api, "shop"));
        Assert.Equal(HttpStatusCode.Forbidden, await InboundAsync(api, "/hello"));

        // The route now sends to a host no Service answers to.
        var generation = (await cp.ConfigzAsync()).GetProperty("generation").GetInt64();
        Yaml.Write(dir, "route.yaml", Yaml.Route("shop", "shop", "shop", "nowhere"));
        await TestControlPlane.EventuallyAsync(async () => (await cp.ConfigzAsync()).GetProperty("generation").GetInt64() > generation, "the broken route read");

        // A later, unrelated change still reaches the sidecar: 403 turns into 200.
        Yaml.Write(dir, "policy.yaml", AllowOnly("/hello"));
        await TestControlPlane.EventuallyAsync(
            async () => await InboundAsync(api, "/hello") == HttpStatusCode.OK, "the policy change applied by the sidecar", TimeSpan.FromSeconds(20));
        Assert.Equal(HttpStatusCode.Forbidden, await InboundAsync(api, "/admin-not"));

        // The route's last good version keeps serving, and nothing was refused.
        Assert.Equal("200 backend-a", await OutboundAsync(api, "shop"));
        await TestControlPlane.EventuallyAsync(async () => await StatusAsync(cp) == "SYNCED", "the sidecar ACKed");
        var row = Assert.Single((await cp.SynczAsync()).EnumerateArray());
        Assert.Equal(JsonValueKind.Null, row.GetProperty("lastNack").ValueKind);
        Assert.Equal(0, Exposition.Value(await Http.GetStringAsync(new Uri(api.StatsUri, "/metrics"), ct), "meshproxy_config_nacks_total"));

        // /debug/configz names the route, the file, the field and the reason, and what serves instead.
        var configz = await cp.ConfigzAsync();
        var held = Assert.Single(configz.GetProperty("heldBack").EnumerateArray());
        Assert.Equal("HttpRoute", held.GetProperty("kind").GetString());
        Assert.Equal("shop", held.GetProperty("namespace").GetString());
        Assert.Equal("shop", held.GetProperty("name").GetString());
        var lastGood = held.GetProperty("servingLastGood").GetString();
        Assert.Contains(configz.GetProperty("resources").EnumerateArray(), r => r.GetProperty("key").GetString() == "HttpRoute/shop/shop" && r.GetProperty("version").GetString() == lastGood);
        Assert.NotEqual(lastGood, held.GetProperty("version").GetString());
        var error = Assert.Single(held.GetProperty("errors").EnumerateArray());
        Assert.Equal(Path.Combine(dir, "route.yaml"), error.GetProperty("file").GetString());
        Assert.Equal("spec.http[0].route[0].destination.host", error.GetProperty("field").GetString());
        Assert.Equal("no Service answers to host 'nowhere'", error.GetProperty("reason").GetString());
        Assert.Equal(1, Exposition.Value(await cp.MetricsAsync(), "meshproxy_controlplane_held_back_resources"));

        // Once the host exists the route is taken as written.
        Yaml.Write(dir, "nowhere.yaml", Yaml.Service("nowhere", "shop", 80, backendB.BoundPort()));
        await TestControlPlane.EventuallyAsync(async () => await OutboundAsync(api, "shop") == "200 backend-b", "the fixed route applied", TimeSpan.FromSeconds(20));
        Assert.Empty((await cp.ConfigzAsync()).GetProperty("heldBack").EnumerateArray());
        Assert.Equal(0, Exposition.Value(await cp.MetricsAsync(), "meshproxy_controlplane_held_back_resources"));
        Assert.Equal(0, Exposition.Value(await Http.GetStringAsync(new Uri(api.StatsUri, "/metrics"), ct), "meshproxy_config_nacks_total"));
    }

    /// <summary>An ALLOW policy for the whole namespace: that path is allowed, every other is denied (403).</summary>
    private static string AllowOnly(string path) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: api-access, namespace: shop }
        spec:
          action: ALLOW
          rules: [{ to: [{ operation: { paths: ["{{path}}"] } }] }]

        """;

    private static async Task<string?> StatusAsync(TestControlPlane cp)
    {
        var rows = (await cp.SynczAsync()).EnumerateArray().ToList();
        return rows.Count == 1 ? rows[0].GetProperty("status").GetString() : null;
    }

    private static async Task<HttpStatusCode> InboundAsync(InProcessSidecar sidecar, string path)
    {
        using var response = await Http.GetAsync(new Uri($"http://{sidecar.InboundEndPoint}{path}"), TestContext.Current.CancellationToken);
        return response.StatusCode;
    }

    private static async Task<string> OutboundAsync(InProcessSidecar sidecar, string host)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, "/"));
        request.Headers.Host = host;
        using var response = await Http.SendAsync(request, TestContext.Current.CancellationToken);
        return $"{(int)response.StatusCode} {(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).Trim()}";
    }
}
