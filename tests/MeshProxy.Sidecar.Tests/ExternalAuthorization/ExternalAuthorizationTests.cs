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

    [Fact]
    public async Task The_body_up_to_max_request_bytes_is_in_the_check_a_longer_one_is_answered_413_and_the_app_gets_every_byte()
    {
        await using var server = NodePeer.Start("ext-authz-server.js");
        var port = (await server.NextAsync(e => e.TryGetProperty("port", out _))).GetProperty("port").GetInt32();
        await using var mesh = await IntegrationMesh.StartAsync(Policies, meshConfig: Provider(port, "      includeRequestBodyInCheck: { maxRequestBytes: 16 }"));

        // Within the limit, declared length and chunked: the Check carries the body as a string, marked whole; the app
        // receives it unchanged.
        foreach (var chunked in new[] { false, true })
        {
            using (var response = await PostAsync(mesh, "/api/small", "hello, checked!", chunked))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }

            var check = await NextCheckAsync(server);
            Assert.Equal("hello, checked!", check.GetProperty("body").GetString());
            Assert.Equal("false", check.GetProperty("headers").GetProperty("x-envoy-auth-partial-body").GetString());
            Assert.True(mesh.App.ReceivedBodies.TryDequeue(out var received));
            Assert.Equal("hello, checked!", System.Text.Encoding.UTF8.GetString(received));
        }

        // Over the limit without allowPartialMessage: 413, whether the length is declared or found by reading; the
        // provider is not asked and the app receives nothing.
        var count = mesh.App.Count;
        foreach (var chunked in new[] { false, true })
        {
            using var response = await PostAsync(mesh, "/api/large", new string('x', 17), chunked);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        }

        Assert.Equal(count, mesh.App.Count);

        // Not matched by the CUSTOM rules: the body is neither held nor limited.
        using (var open = await PostAsync(mesh, "/public/large", new string('y', 100_000), chunked: false))
        {
            Assert.Equal(HttpStatusCode.OK, open.StatusCode);
        }

        Assert.True(mesh.App.ReceivedBodies.TryDequeue(out var publicBody) && publicBody.Length == 100_000);

        // The next Check the server saw is this one: the 413s asked nothing.
        using (var after = await PostAsync(mesh, "/api/after", "after", chunked: false))
        {
            Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        }

        Assert.Equal("/api/after", (await NextCheckAsync(server)).GetProperty("path").GetString());
    }

    [Fact]
    public async Task With_allow_partial_message_a_long_body_sends_its_first_bytes_packed_as_bytes_and_the_app_still_gets_all_of_it()
    {
        await using var server = NodePeer.Start("ext-authz-server.js");
        var port = (await server.NextAsync(e => e.TryGetProperty("port", out _))).GetProperty("port").GetInt32();
        await using var mesh = await IntegrationMesh.StartAsync(Policies,
            meshConfig: Provider(port, "      includeRequestBodyInCheck: { maxRequestBytes: 1000, allowPartialMessage: true, packAsBytes: true }"));

        // 300 KB of every byte value (not UTF-8 text), larger than Kestrel's and the forwarder's buffers, so the
        // held bytes and the rest are joined across several reads.
        var body = new byte[300_000];
        for (var i = 0; i < body.Length; i++)
        {
            body[i] = (byte)(i * 7 % 256);
        }

        foreach (var chunked in new[] { false, true })
        {
            using (var response = await PostAsync(mesh, "/api/upload", body, chunked))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }

            var check = await NextCheckAsync(server);
            Assert.Equal(body[..1000], Convert.FromBase64String(check.GetProperty("rawBody").GetString()!));
            Assert.Equal(string.Empty, check.GetProperty("body").GetString());
            Assert.Equal("true", check.GetProperty("headers").GetProperty("x-envoy-auth-partial-body").GetString());
            Assert.True(mesh.App.ReceivedBodies.TryDequeue(out var received));
            Assert.Equal(body.Length, received.Length);
            Assert.True(body.AsSpan().SequenceEqual(received), "the app receives the body the caller sent, byte for byte");
        }

        // A body shorter than the limit is whole.
        using (var small = await PostAsync(mesh, "/api/small", body[..10], chunked: true))
        {
            Assert.Equal(HttpStatusCode.OK, small.StatusCode);
        }

        var smallCheck = await NextCheckAsync(server);
        Assert.Equal(body[..10], Convert.FromBase64String(smallCheck.GetProperty("rawBody").GetString()!));
        Assert.Equal("false", smallCheck.GetProperty("headers").GetProperty("x-envoy-auth-partial-body").GetString());
    }

    [Fact]
    public async Task A_provider_that_is_a_mesh_service_is_asked_over_mtls_through_its_own_sidecar_with_billings_identity()
    {
        // The ext_authz server behind its own sidecar (STRICT, SVID "authz"); billing knows it as the mesh service
        // "ext-authz", whose endpoint is that sidecar's inbound and runs as "authz".
        await using var server = NodePeer.Start("ext-authz-server.js");
        var port = (await server.NextAsync(e => e.TryGetProperty("port", out _))).GetProperty("port").GetInt32();
        var pki = Identity.MeshPki.Shared;
        var files = pki.WriteFiles(Directory.CreateTempSubdirectory("meshproxy-authz-provider-").FullName, pki.FreshSvid("rootA", "authz"));
        await using var providerSidecar = await Infrastructure.TestSidecar.StartAsync(new Infrastructure.MeshYaml("authz", port, "GRPC", tls: files).Mtls("STRICT"));
        var service = new Infrastructure.MeshYaml("unused", 1).MeshService("ext-authz", 9000, "GRPC", "authz", null, providerSidecar.Inbound.Port).ToString();
        var policies = Policies + "\n" + service[service.IndexOf("---", StringComparison.Ordinal)..];
        await using var mesh = await IntegrationMesh.StartAsync(policies, meshConfig: """
              extensionProviders:
              - name: ext-authz
                envoyExtAuthzGrpc: { service: ext-authz, port: 9000, timeout: 30s }
            """);

        using (var allowed = await SendAsync(mesh, "/api/x"))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }

        // The Check arrived through the provider's sidecar, which proved billing's SVID (its XFCC names it).
        var check = await NextCheckAsync(server);
        Assert.Equal("/api/x", check.GetProperty("path").GetString());
        Assert.Contains("URI=spiffe://cluster.local/ns/test/sa/billing", check.GetProperty("xfcc").GetString(), StringComparison.Ordinal);

        using (var denied = await SendAsync(mesh, "/deny/x"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, denied.StatusCode);
        }

        // The provider's sidecar never took a plaintext connection: its inbound counted mTLS handshakes only.
        var metrics = await mesh.Client.GetStringAsync(new Uri($"http://{providerSidecar.Stats}/metrics"), Ct);
        Assert.Contains("spiffe://cluster.local/ns/test/sa/billing", metrics, StringComparison.Ordinal);
        Assert.Equal(2, await mesh.SampleAsync("meshproxy_ext_authz_total{provider=\"ext-authz\",result=\"allow\"}", Ct)
            + await mesh.SampleAsync("meshproxy_ext_authz_total{provider=\"ext-authz\",result=\"deny\"}", Ct));
    }

    private static Task<HttpResponseMessage> PostAsync(IntegrationMesh mesh, string path, string body, bool chunked) =>
        PostAsync(mesh, path, System.Text.Encoding.UTF8.GetBytes(body), chunked);

    /// <summary>A POST to billing through store's sidecar, with a declared length or chunked (no Content-Length).</summary>
    private static async Task<HttpResponseMessage> PostAsync(IntegrationMesh mesh, string path, byte[] body, bool chunked)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(mesh.Store.OutboundUri, path));
        request.Headers.Host = "billing";
        request.Content = chunked ? new StreamContent(new MemoryStream(body)) : new ByteArrayContent(body);
        if (chunked)
        {
            request.Headers.TransferEncodingChunked = true;
        }

        return await mesh.Client.SendAsync(request, Ct);
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
