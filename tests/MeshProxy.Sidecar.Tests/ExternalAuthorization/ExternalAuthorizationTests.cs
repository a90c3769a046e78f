using System.Net;
using System.Text.Json;
using MeshProxy.Sidecar.ExternalAuthorization;
using MeshProxy.Sidecar.Tests.Authorization;
using MeshProxy.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.Sidecar.Tests.ExternalAuthorization;

/// <summary>
/// The CUSTOM action end to end: a caller's sidecar sends over mTLS to billing's sidecar, whose CUSTOM policy
/// sends matching requests to a separate ext_authz server (grpc-js, peers/ext-authz-server.js, built from the same
/// envoy.service.auth.v3 protos) before DENY and ALLOW. What the app receives is recorded by the app; what the
/// provider was asked, by the server's own event lines.
/// </summary>
public sealed class ExternalAuthorizationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Policies = """
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: ext, namespace: test }
        spec:
          action: CUSTOM
          provider: { name: ext-authz }
          rules:
          - to: [{ operation: { paths: ["/api/*", "/deny*", "/hang*"] } }]
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: no-blocked, namespace: test }
        spec:
          action: DENY
          rules:
          - to: [{ operation: { paths: ["/api/blocked"] } }]
        """;

    private static string Provider(int port, string more = "") => $"""
          extensionProviders:
          - name: ext-authz
            envoyExtAuthzGrpc:
              service: test/127.0.0.1
              port: {port}
              timeout: 30s
              headersToUpstreamOnAllow: ["x-ext-authz-*"]
              headersToDownstreamOnDeny: ["www-authenticate", "x-ext-authz-*"]
        {more}
        """;

    [Fact]
    public async Task The_provider_allows_with_headers_for_the_app_denies_with_its_own_reply_and_is_asked_only_about_matching_requests()
    {
        await using var server = NodePeer.Start("ext-authz-server.js");
        var port = (await server.NextAsync(e => e.TryGetProperty("port", out _))).GetProperty("port").GetInt32();
        await using var mesh = await IntegrationMesh.StartAsync(Policies, meshConfig: Provider(port));

        // Allowed: the provider's headers reach the app (only those headersToUpstreamOnAllow lets through), the ones
        // it removes do not, and the client gets its response header.
        using (var allowed = await SendAsync(mesh, "/api/x?q=1", ("x-remove-me", "1"), ("x-not-for-app", "caller's")))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
            Assert.Equal("yes", Assert.Single(allowed.Headers.GetValues("x-ext-authz-seen")));
        }

        Assert.True(mesh.App.ReceivedHeaders.TryDequeue(out var headers));
        Assert.Equal("alice", headers["x-ext-authz-user"]);
        Assert.Equal("ok", headers["x-ext-authz-check"]);
        Assert.Equal("caller's", headers["x-not-for-app"]);
        Assert.False(headers.ContainsKey("x-remove-me"));

        var check = await NextCheckAsync(server);
        Assert.Equal("GET", check.GetProperty("method").GetString());
        Assert.Equal("/api/x?q=1", check.GetProperty("path").GetString());
        Assert.Equal("billing", check.GetProperty("host").GetString());
        Assert.Equal("spiffe://cluster.local/ns/test/sa/store", check.GetProperty("sourcePrincipal").GetString());
        Assert.Equal("spiffe://cluster.local/ns/test/sa/billing", check.GetProperty("destinationPrincipal").GetString());
        Assert.Equal("1", check.GetProperty("headers").GetProperty("x-remove-me").GetString());
        Assert.Equal("billing", check.GetProperty("headers").GetProperty(":authority").GetString());
        Assert.False(string.IsNullOrEmpty(check.GetProperty("id").GetString()));

        // Denied: the provider's status, body and (filtered) headers go to the client; nothing reaches the app.
        var received = mesh.App.Count;
        using (var denied = await SendAsync(mesh, "/deny/x"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, denied.StatusCode);
            Assert.Equal("{\"error\":\"denied by ext-authz\",\"path\":\"/deny/x\"}", await denied.Content.ReadAsStringAsync(Ct));
            Assert.Equal("Custom realm=\"ext-authz\"", Assert.Single(denied.Headers.WwwAuthenticate).ToString());
            Assert.Equal("not on the list", Assert.Single(denied.Headers.GetValues("x-ext-authz-reason")));
            Assert.False(denied.Headers.Contains("x-hidden"), "headersToDownstreamOnDeny leaves x-hidden out");
        }

        using (var teapot = await SendAsync(mesh, "/deny/y?status=418"))
        {
            Assert.Equal((HttpStatusCode)418, teapot.StatusCode);
        }

        Assert.Equal(received, mesh.App.Count);
        Assert.Equal("/deny/x", (await NextCheckAsync(server)).GetProperty("path").GetString());
        Assert.Equal("/deny/y?status=418", (await NextCheckAsync(server)).GetProperty("path").GetString());
        Assert.Contains(mesh.BillingLog.WithEvent(4201), l => l.Contains("Denied GET /deny/x from spiffe://cluster.local/ns/test/sa/store with 401: provider ext-authz (CUSTOM policy test/ext, rule 0)", StringComparison.Ordinal));

        // Not matched by the CUSTOM policy's rules: never sent to the provider. The next Check the server sees is
        // the one after it.
        using (var open = await SendAsync(mesh, "/public/x"))
        {
            Assert.Equal(HttpStatusCode.OK, open.StatusCode);
        }

        // CUSTOM before DENY: the provider allows, then the DENY policy refuses.
        using (var blocked = await SendAsync(mesh, "/api/blocked"))
        {
            Assert.Equal(HttpStatusCode.Forbidden, blocked.StatusCode);
            Assert.Equal("RBAC: access denied\n", await blocked.Content.ReadAsStringAsync(Ct));
        }

        Assert.Equal("/api/blocked", (await NextCheckAsync(server)).GetProperty("path").GetString());
        Assert.Equal(2, await mesh.SampleAsync("meshproxy_ext_authz_total{provider=\"ext-authz\",result=\"allow\"}", Ct));
        Assert.Equal(2, await mesh.SampleAsync("meshproxy_ext_authz_total{provider=\"ext-authz\",result=\"deny\"}", Ct));
        Assert.Equal(2, await mesh.DecisionsAsync("deny", "test/ext", Ct));
    }

    [Theory]
    [InlineData(false, null, HttpStatusCode.Forbidden)]
    [InlineData(false, "503", HttpStatusCode.ServiceUnavailable)]
    [InlineData(true, null, HttpStatusCode.OK)]
    public async Task A_provider_that_times_out_or_dies_fails_closed_with_status_on_error_or_open_when_asked(bool failOpen, string? statusOnError, HttpStatusCode expected)
    {
        var server = NodePeer.Start("ext-authz-server.js");
        try
        {
            var port = (await server.NextAsync(e => e.TryGetProperty("port", out _))).GetProperty("port").GetInt32();
            var more = $"      failOpen: {(failOpen ? "true" : "false")}" + (statusOnError is null ? string.Empty : $"\n      statusOnError: \"{statusOnError}\"");
            var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
            await using var mesh = await IntegrationMesh.StartAsync(Policies, meshConfig: Provider(port, more),
                billingServices: services => services.AddSingleton(sp => ActivatorUtilities.CreateInstance<ExternalAuthorizer>(sp, (TimeProvider)time)));
            var result = failOpen ? "error_allow" : "error_deny";

            // Timeout: the server receives the Check and never answers; the sidecar's 30 s pass on the fake clock. A 503
            // is retried by the caller's sidecar (its default retry policy), whose retry is checked and held in turn.
            var hanging = SendAsync(mesh, "/hang/x");
            var timeouts = 0;
            while (true)
            {
                var check = NextCheckAsync(server);
                if (await Task.WhenAny(hanging, check) == hanging)
                {
                    break;
                }

                Assert.Equal("/hang/x", (await check).GetProperty("path").GetString());
                Assert.False(hanging.IsCompleted);
                time.Advance(TimeSpan.FromSeconds(31));
                timeouts++;
            }

            using (var response = await hanging)
            {
                Assert.Equal(expected, response.StatusCode);
            }

            Assert.True(timeouts >= 1);
            Assert.Equal(timeouts, await mesh.SampleAsync($"meshproxy_ext_authz_total{{provider=\"ext-authz\",result=\"{result}\"}}", Ct));
            Assert.Equal(timeouts, mesh.BillingLog.WithEvent(4202).Count(l => l.Contains("timed out after 30s", StringComparison.Ordinal)));

            // The server dies: the connection is refused, and the same rule applies.
            await server.DisposeAsync();
            var received = mesh.App.Count;
            using (var response = await SendAsync(mesh, "/api/x"))
            {
                Assert.Equal(expected, response.StatusCode);
            }

            Assert.Equal(failOpen ? received + 1 : received, mesh.App.Count);
            Assert.True(await mesh.SampleAsync($"meshproxy_ext_authz_total{{provider=\"ext-authz\",result=\"{result}\"}}", Ct) > timeouts);
            Assert.Contains(mesh.BillingLog.WithEvent(4202), l => l.Contains("/api/x", StringComparison.Ordinal) && l.Contains("Unavailable", StringComparison.Ordinal));
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_custom_policy_naming_an_undefined_provider_fails_closed_and_says_why()
    {
        await using var mesh = await IntegrationMesh.StartAsync(Policies);
        using (var response = await SendAsync(mesh, "/api/x"))
        {
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        }

        using (var open = await SendAsync(mesh, "/public/x"))
        {
            Assert.Equal(HttpStatusCode.OK, open.StatusCode);
        }

        Assert.Contains(mesh.BillingLog.WithEvent(4203), l => l.Contains("provider 'ext-authz' is not defined in MeshConfig extensionProviders", StringComparison.Ordinal));
        Assert.Equal(1, await mesh.SampleAsync("meshproxy_ext_authz_total{provider=\"ext-authz\",result=\"error_deny\"}", Ct));
    }

    private static async Task<JsonElement> NextCheckAsync(NodePeer server) =>
        await server.NextAsync(e => e.TryGetProperty("type", out var type) && type.GetString() == "check", TimeSpan.FromSeconds(20));

    private static async Task<HttpResponseMessage> SendAsync(IntegrationMesh mesh, string path, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(mesh.Store.OutboundUri, path));
        request.Headers.Host = "billing";
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        return await mesh.Client.SendAsync(request, Ct);
    }
}
