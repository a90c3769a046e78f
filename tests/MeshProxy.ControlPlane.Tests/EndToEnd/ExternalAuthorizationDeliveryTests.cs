using System.Net;
using System.Text.Json;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Samples.App;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// Issue 19 item 4 through the control plane: a provider defined in MeshConfig extensionProviders (directory source)
/// and an AuthorizationPolicy CUSTOM naming it reach a real sidecar, whose requests then go to a separate ext_authz
/// server (grpc-js, peers/ext-authz-server.js, shared with the sidecar's tests) to be allowed or denied; a MeshConfig
/// edit moving the provider reaches the sidecar while it serves.
/// </summary>
public sealed class ExternalAuthorizationDeliveryTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    private const string Policy = """
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: ext, namespace: shop }
        spec:
          action: CUSTOM
          provider: { name: ext-authz }
          rules:
          - to: [{ operation: { paths: ["/hello", "/deny*"] } }]

        """;

    [Fact]
    public async Task A_meshconfig_provider_and_a_custom_policy_from_the_control_plane_send_the_sidecars_requests_to_the_ext_authz_server()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var server = NodePeer.Start("ext-authz-server.js");
        var port = (await server.NextAsync(e => e.TryGetProperty("port", out _))).GetProperty("port").GetInt32();
        await using var app = SampleApp.Build("billing-app", 0, null, quiet: true);
        await app.StartAsync(ct);

        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "services.yaml", Yaml.Service("billing", "shop", 80, app.BoundPort()));
        Yaml.Write(dir, "mesh.yaml", Mesh(port, failure: string.Empty));
        Yaml.Write(dir, "policy.yaml", Policy);

        await using var cp = await TestControlPlane.StartAsync(dir);
        await using var billing = await InProcessSidecar.StartAsync(
            InProcessSidecar.WriteBootstrap(RepoPaths.NewTempDirectory(), "billing", "shop", cp.GrpcUri.ToString(), app.BoundPort()));
        await TestControlPlane.EventuallyAsync(async () => await SyncedAsync(cp), "the sidecar SYNCED", TimeSpan.FromSeconds(20));

        // Allowed by the provider: the app sees the provider's header (headersToUpstreamOnAllow lets x-ext-authz-* through).
        using (var allowed = await InboundAsync(billing, "/hello", ct))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
            var seen = JsonDocument.Parse(await allowed.Content.ReadAsStringAsync(ct)).RootElement.GetProperty("headers");
            Assert.Equal("alice", seen.GetProperty("x-ext-authz-user").GetString());
            Assert.False(seen.TryGetProperty("x-not-for-app", out _), "headersToUpstreamOnAllow keeps x-not-for-app from the app");
        }

        var check = await NextCheckAsync(server);
        Assert.Equal("/hello", check.GetProperty("path").GetString());
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/billing", check.GetProperty("destinationPrincipal").GetString());

        // Denied by the provider: its status and body reach the caller.
        using (var denied = await InboundAsync(billing, "/deny/x", ct))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, denied.StatusCode);
            Assert.Equal("{\"error\":\"denied by ext-authz\",\"path\":\"/deny/x\"}", await denied.Content.ReadAsStringAsync(ct));
        }

        Assert.Equal("/deny/x", (await NextCheckAsync(server)).GetProperty("path").GetString());

        // Not matched by the CUSTOM rules: answered by the app without a Check (the next Check seen is the one after it).
        using (var open = await InboundAsync(billing, "/", ct))
        {
            Assert.Equal(HttpStatusCode.OK, open.StatusCode);
        }

        // MeshConfig edited while serving: the provider now points at a closed port and fails closed with its
        // statusOnError, which only the new MeshConfig names.
        var closed = ClosedPort.Next();
        Yaml.Write(dir, "mesh.yaml", Mesh(closed, failure: "statusOnError: \"503\""));
        await TestControlPlane.EventuallyAsync(
            async () => { using var r = await InboundAsync(billing, "/hello", ct); return r.StatusCode == HttpStatusCode.ServiceUnavailable; },
            "the edited provider applied by the sidecar", TimeSpan.FromSeconds(20));

        // And back: the server is asked again.
        Yaml.Write(dir, "mesh.yaml", Mesh(port, failure: string.Empty));
        await TestControlPlane.EventuallyAsync(
            async () => { using var r = await InboundAsync(billing, "/hello", ct); return r.StatusCode == HttpStatusCode.OK; },
            "the provider restored", TimeSpan.FromSeconds(20));
        Assert.Equal("/hello", (await NextCheckAsync(server)).GetProperty("path").GetString());
        await TestControlPlane.EventuallyAsync(async () => await SyncedAsync(cp), "the sidecar ACKed every MeshConfig", TimeSpan.FromSeconds(20));
    }

    private static string Mesh(int port, string failure) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: MeshConfig
        metadata: { name: mesh, namespace: meshproxy-system }
        spec:
          extensionProviders:
          - name: ext-authz
            envoyExtAuthzGrpc:
              service: ext-authz/127.0.0.1
              port: {{port}}
              timeout: 20s
              headersToUpstreamOnAllow: ["x-ext-authz-*"]
              {{failure}}

        """;

    private static async Task<JsonElement> NextCheckAsync(NodePeer server) =>
        await server.NextAsync(e => e.TryGetProperty("type", out var type) && type.GetString() == "check", TimeSpan.FromSeconds(20));

    private static async Task<bool> SyncedAsync(TestControlPlane cp)
    {
        var rows = (await cp.SynczAsync()).EnumerateArray().ToList();
        return rows.Count == 1 && rows[0].GetProperty("status").GetString() == "SYNCED";
    }

    private static Task<HttpResponseMessage> InboundAsync(InProcessSidecar sidecar, string path, CancellationToken ct) =>
        Http.GetAsync(new Uri($"http://{sidecar.InboundEndPoint}{path}"), ct);
}
