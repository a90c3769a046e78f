using System.Net;
using System.Net.Http.Headers;
using MeshProxy.Sidecar.Authentication;
using MeshProxy.Sidecar.Tests.Authorization;
using MeshProxy.Sidecar.Tests.Infrastructure;
using MeshProxy.Samples.App;
using MeshProxy.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.Sidecar.Tests.Authentication;

/// <summary>
/// JWTs minted by jose, sent by a caller through its sidecar over mTLS to billing, whose sidecar holds a
/// RequestAuthentication and AuthorizationPolicies on request principals and claims. What reaches the app is
/// counted there; refusals are checked on the wire (401 and its challenge), in the log and in the metric.
/// </summary>
public sealed class JwtIntegrationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Policies(string keys) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: RequestAuthentication
        metadata: { name: issuer, namespace: test }
        spec:
          jwtRules:
          - issuer: {{JoseTokens.Issuer}}
            audiences: [{{JoseTokens.Audience}}]
            {{keys}}
            outputClaimToHeaders:
            - header: x-jwt-sub
              claim: sub
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: jwt, namespace: test }
        spec:
          action: ALLOW
          rules:
          - from: [{ source: { requestPrincipals: ["{{JoseTokens.Issuer}}/*"] } }]
            to: [{ operation: { paths: ["/api/*"] } }]
          - to: [{ operation: { paths: ["/admin/*"] } }]
            when:
            - key: request.auth.claims[groups]
              values: ["admins"]
            - key: request.auth.audiences
              values: ["{{JoseTokens.Audience}}"]
          - to: [{ operation: { paths: ["/public/*"] } }]
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: no-dave, namespace: test }
        spec:
          action: DENY
          rules:
          - from: [{ source: { requestPrincipals: ["{{JoseTokens.Issuer}}/dave"] } }]
            to: [{ operation: { paths: ["/api/dave-denied"] } }]
        """;

    [Fact]
    public async Task Valid_tokens_pass_with_their_principal_and_claims_and_every_bad_one_is_refused_with_401()
    {
        var jose = await JoseTokens.MintAsync();
        await using var mesh = await IntegrationMesh.StartAsync(Policies($"jwks: '{jose.Jwks}'"));

        // Valid: RS256, ES256, EdDSA (Ed25519), and RS256 without a kid (every RSA key of the set is tried).
        foreach (var (name, sub) in new[] { ("rs256", "alice"), ("es256", "bob"), ("eddsa", "carol"), ("rs256NoKid", "dave") })
        {
            using var ok = await SendAsync(mesh, "/api/x", jose.Token(name));
            Assert.True(ok.StatusCode == HttpStatusCode.OK, $"{name}: {ok.StatusCode} {await ok.Content.ReadAsStringAsync(Ct)}");
            Assert.True(mesh.App.ReceivedHeaders.TryDequeue(out var headers));
            Assert.Equal(sub, headers["x-jwt-sub"]);
            Assert.False(headers.ContainsKey("authorization"), "the token is not forwarded unless forwardOriginalToken");
        }

        var received = mesh.App.Count;

        // Invalid, each for its own reason: 401 with the challenge; nothing reaches the app.
        foreach (var (name, reason) in new[]
        {
            ("expired", "expired"), ("notYetValid", "not_yet_valid"), ("wrongIssuer", "unknown_issuer"), ("wrongAudience", "audience_not_allowed"),
            ("algNone", "unsupported_algorithm"), ("hs256WithRsaPublicKey", "unsupported_algorithm"), ("unknownKid", "unknown_key"), ("forged", "bad_signature"),
        })
        {
            // /public/* allows anyone: a refused token is refused although policy alone would have let the request in.
            using var refused = await SendAsync(mesh, "/public/x", jose.Token(name));
            Assert.True(refused.StatusCode == HttpStatusCode.Unauthorized, $"{name}: {refused.StatusCode}");
            Assert.Equal("Bearer realm=\"meshproxy\", error=\"invalid_token\"", Assert.Single(refused.Headers.WwwAuthenticate).ToString());
            var expected = name == "hs256WithRsaPublicKey" ? 2 : 1; // after algNone's
            Assert.Equal(expected, await mesh.SampleAsync($"meshproxy_request_authentication_total{{result=\"{reason}\"}}", Ct));
        }

        Assert.Equal(received, mesh.App.Count);
        Assert.Contains(mesh.BillingLog.WithEvent(4101), l => l.Contains("JWT expired (issuer https://issuer.test)", StringComparison.Ordinal));

        // No token: left to policy. /public/* lets it in, /api/* needs a request principal.
        using (var open = await SendAsync(mesh, "/public/x", token: null))
        {
            Assert.Equal(HttpStatusCode.OK, open.StatusCode);
        }

        using (var closed = await SendAsync(mesh, "/api/x", token: null))
        {
            Assert.Equal(HttpStatusCode.Forbidden, closed.StatusCode);
        }

        // Claims in `when`: alice is in admins, bob is not. requestPrincipals in a DENY: dave only.
        await ExpectAsync(mesh, "/admin/x", jose.Token("rs256"), HttpStatusCode.OK);
        await ExpectAsync(mesh, "/admin/x", jose.Token("es256"), HttpStatusCode.Forbidden);
        await ExpectAsync(mesh, "/api/dave-denied", jose.Token("rs256NoKid"), HttpStatusCode.Forbidden);
        await ExpectAsync(mesh, "/api/dave-denied", jose.Token("rs256"), HttpStatusCode.OK);
        Assert.Equal(2, await mesh.SampleAsync("meshproxy_request_authentication_total{result=\"no_token\"}", Ct));
    }

    [Fact]
    public async Task A_caller_cannot_pose_as_a_claim_header_nor_sneak_a_second_token()
    {
        var jose = await JoseTokens.MintAsync();
        await using var mesh = await IntegrationMesh.StartAsync(Policies($"jwks: '{jose.Jwks}'"));
        mesh.App.ReceivedHeaders.Clear();

        using (var spoofed = await SendAsync(mesh, "/public/x", token: null, extra: ("x-jwt-sub", "admin")))
        {
            Assert.Equal(HttpStatusCode.OK, spoofed.StatusCode);
        }

        Assert.True(mesh.App.ReceivedHeaders.TryDequeue(out var headers));
        Assert.False(headers.ContainsKey("x-jwt-sub"), "a claim header the caller sent is removed");

        // Two different tokens (header and query parameter): which one would count is ambiguous, so neither does.
        using var two = await SendAsync(mesh, "/api/x?access_token=" + jose.Token("es256"), jose.Token("rs256"));
        Assert.Equal(HttpStatusCode.Unauthorized, two.StatusCode);
        Assert.Equal(1, await mesh.SampleAsync("meshproxy_request_authentication_total{result=\"multiple_tokens\"}", Ct));
    }

    [Fact]
    public async Task Keys_from_a_jwks_uri_are_fetched_refreshed_on_the_clock_and_outlive_the_key_server()
    {
        var jose = await JoseTokens.MintAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var options = new JwksCacheOptions { RefreshInterval = TimeSpan.FromMinutes(20), RetryInterval = TimeSpan.FromSeconds(30) };
        var server = await JwksServer.StartAsync(jose.Jwks);
        try
        {
            await using var mesh = await IntegrationMesh.StartAsync(
                Policies($"jwksUri: {server.Uri}"),
                billingServices: services => services.AddSingleton(sp => new JwksCache(options, time, sp.GetRequiredService<ILogger<JwksCache>>())));

            // First use fetches; later requests are served from memory.
            await ExpectAsync(mesh, "/api/x", jose.Token("rs256"), HttpStatusCode.OK);
            await ExpectAsync(mesh, "/api/x", jose.Token("es256"), HttpStatusCode.OK);
            Assert.Equal(1, server.Hits);

            // The issuer rotates to rsa-2. Before the refresh interval has passed, the cached set does not know it.
            server.Body = jose.RotatedJwks;
            time.Advance(TimeSpan.FromMinutes(19));
            await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.Unauthorized);
            Assert.Equal(1, server.Hits);

            // Past it, a request starts the refresh (served by the old set meanwhile); then the new key works.
            time.Advance(TimeSpan.FromMinutes(2));
            await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.Unauthorized);
            await Eventually.TrueAsync(() => mesh.BillingLog.WithEvent(4102).Count == 2, "the refresh after the interval", 20_000);
            await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.OK);
            Assert.Equal(2, server.Hits);

            // The key server goes away. Refreshes fail, the last good set keeps serving.
            await server.DisposeAsync();
            time.Advance(TimeSpan.FromMinutes(21));
            await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.OK);
            await Eventually.TrueAsync(() => mesh.BillingLog.WithEvent(4103).Count > 0, "a failed refresh", 20_000);
            Assert.Contains("keeping the last good set (1 keys)", mesh.BillingLog.WithEvent(4103)[0], StringComparison.Ordinal);
            time.Advance(TimeSpan.FromMinutes(1));
            await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.OK);
            await ExpectAsync(mesh, "/api/x", jose.Token("rs256"), HttpStatusCode.Unauthorized); // rotated out
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Keys_from_a_jwks_file_are_read_again_on_the_clock_and_a_broken_or_missing_file_keeps_the_last_good_set()
    {
        var jose = await JoseTokens.MintAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var options = new JwksCacheOptions { FileRefreshInterval = TimeSpan.FromSeconds(30), RetryInterval = TimeSpan.FromSeconds(30) };
        var file = Path.Combine(Directory.CreateTempSubdirectory("meshproxy-jwks-").FullName, "keys.json");
        await File.WriteAllTextAsync(file, jose.Jwks, Ct);
        await using var mesh = await IntegrationMesh.StartAsync(
            Policies($"jwksFile: {file}"),
            billingServices: services => services.AddSingleton(sp => new JwksCache(options, time, sp.GetRequiredService<ILogger<JwksCache>>())));

        await ExpectAsync(mesh, "/api/x", jose.Token("rs256"), HttpStatusCode.OK);

        // The mounted Secret is updated: the file is read again once the interval has passed on the clock, not before.
        await File.WriteAllTextAsync(file, jose.RotatedJwks, Ct);
        time.Advance(TimeSpan.FromSeconds(29));
        await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.Unauthorized);
        time.Advance(TimeSpan.FromSeconds(2));
        await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.Unauthorized);
        await Eventually.TrueAsync(() => mesh.BillingLog.WithEvent(4102).Count == 2, "the file read again after the interval", 20_000);
        await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.OK);

        // Half-written, then gone: the last good set keeps serving.
        await File.WriteAllTextAsync(file, "{\"keys\": [", Ct);
        time.Advance(TimeSpan.FromSeconds(31));
        await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.OK);
        await Eventually.TrueAsync(() => mesh.BillingLog.WithEvent(4103).Count == 1, "a failed read of the broken file", 20_000);
        File.Delete(file);
        time.Advance(TimeSpan.FromSeconds(31));
        await ExpectAsync(mesh, "/api/x", jose.Token("rotated"), HttpStatusCode.OK);
        await Eventually.TrueAsync(() => mesh.BillingLog.WithEvent(4103).Count == 2, "a failed read of the missing file", 20_000);
        Assert.All(mesh.BillingLog.WithEvent(4103), l => Assert.Contains("keeping the last good set (1 keys)", l, StringComparison.Ordinal));
        await ExpectAsync(mesh, "/api/x", jose.Token("rs256"), HttpStatusCode.Unauthorized); // rotated out
    }

    [Fact]
    public async Task An_issuer_whose_keys_were_never_fetched_gets_401_not_a_pass()
    {
        var jose = await JoseTokens.MintAsync();
        await using var mesh = await IntegrationMesh.StartAsync(Policies($"jwksUri: http://127.0.0.1:{ClosedPort.Next()}/jwks"));
        using var response = await SendAsync(mesh, "/public/x", jose.Token("rs256"));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(1, await mesh.SampleAsync("meshproxy_request_authentication_total{result=\"keys_unavailable\"}", Ct));
        Assert.Contains(mesh.BillingLog.WithEvent(4103), l => l.Contains("no keys yet", StringComparison.Ordinal));
    }

    private static async Task<HttpResponseMessage> SendAsync(IntegrationMesh mesh, string path, string? token, (string Name, string Value)? extra = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(mesh.Store.OutboundUri, path));
        request.Headers.Host = "billing";
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        if (extra is { } header)
        {
            request.Headers.TryAddWithoutValidation(header.Name, header.Value);
        }

        return await mesh.Client.SendAsync(request, Ct);
    }

    private static async Task ExpectAsync(IntegrationMesh mesh, string path, string token, HttpStatusCode expected)
    {
        using var response = await SendAsync(mesh, path, token);
        Assert.True(response.StatusCode == expected, $"{path}: {response.StatusCode}, expected {expected}: {await response.Content.ReadAsStringAsync(Ct)}");
    }

    /// <summary>An issuer's key endpoint on Kestrel: serves <see cref="Body"/>, counts fetches, goes away on dispose.</summary>
    private sealed class JwksServer : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _hits;
        private bool _disposed;

        private JwksServer(WebApplication app, string body)
        {
            _app = app;
            Body = body;
        }

        public volatile string Body;

        public int Hits => Volatile.Read(ref _hits);

        public Uri Uri { get; private set; } = null!;

        public static async Task<JwksServer> StartAsync(string body)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            var app = builder.Build();
            var server = new JwksServer(app, body);
            app.MapGet("/jwks", async context =>
            {
                Interlocked.Increment(ref server._hits);
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync(server.Body);
            });
            await app.StartAsync();
            server.Uri = new Uri($"http://127.0.0.1:{app.BoundPort()}/jwks");
            return server;
        }

        public async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
