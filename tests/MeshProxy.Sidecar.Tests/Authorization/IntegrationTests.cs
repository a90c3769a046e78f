using System.Net;
using MeshProxy.Sidecar.Telemetry;
using MeshProxy.Sidecar.Tests.Identity;

namespace MeshProxy.Sidecar.Tests.Authorization;

/// <summary>
/// "Only the store may create charges in billing", over mTLS between real sidecars: the policy is in
/// billing's bootstrap, the callers' identities are their SVIDs, and the app counts what reaches it.
/// </summary>
public sealed class IntegrationTests
{
    private const string OnlyStoreCharges = """
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: store-charges, namespace: test }
        spec:
          action: ALLOW
          rules:
            - from: [{ source: { principals: ["cluster.local/ns/test/sa/store"] } }]
              to: [{ operation: { methods: ["POST"], paths: ["/charges"] } }]
            - to: [{ operation: { methods: ["GET"] } }]
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: no-debug, namespace: test }
        spec:
          action: DENY
          rules:
            - when: [{ key: "request.headers[x-debug]", values: ["1"] }]
        """;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Only_the_store_may_post_charges_and_both_may_get()
    {
        await using var mesh = await IntegrationMesh.StartAsync(OnlyStoreCharges);

        using (var allowed = await mesh.SendAsync(mesh.Store, HttpMethod.Post, "/charges", Ct))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }

        Assert.Equal(1, mesh.App.Count);

        using (var denied = await mesh.SendAsync(mesh.Other, HttpMethod.Post, "/charges", Ct))
        {
            Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
            Assert.Equal("RBAC: access denied\n", await denied.Content.ReadAsStringAsync(Ct));
            Assert.Equal("-", Assert.Single(denied.Headers.GetValues(LocalReply.FlagsHeader)));
        }

        Assert.Equal(1, mesh.App.Count);
        var line = Assert.Single(mesh.BillingLog.WithEvent(4001));
        Assert.Contains("POST /charges", line, StringComparison.Ordinal);
        Assert.Contains("spiffe://cluster.local/ns/test/sa/other", line, StringComparison.Ordinal);
        Assert.Contains("denied: no ALLOW policy matched (1 apply)", line, StringComparison.Ordinal);

        foreach (var caller in new[] { mesh.Store, mesh.Other })
        {
            using var get = await mesh.SendAsync(caller, HttpMethod.Get, "/charges", Ct);
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        }

        Assert.Equal(3, mesh.App.Count);
        Assert.Equal(1, await mesh.DecisionsAsync("deny", "none", Ct));
        Assert.Equal(3, await mesh.DecisionsAsync("allow", "test/store-charges", Ct));
    }

    [Fact]
    public async Task Bypass_spellings_on_the_wire_are_denied_or_refused_and_never_reach_the_app()
    {
        await using var mesh = await IntegrationMesh.StartAsync(OnlyStoreCharges);
        const string Host = "Host: billing\r\nContent-Length: 0\r\nConnection: close\r\n";

        // Each spelling is /charges to a server that normalizes; the policy must see it as /charges too.
        string[] spellings = ["//charges", "/./charges", "/%63harges", "/charges/../charges", "/x/..//charges", "/%2e/charges"];
        foreach (var path in spellings)
        {
            var (status, response) = await mesh.SendRawAsync(mesh.OtherSvid, $"POST {path} HTTP/1.1\r\n{Host}\r\n", Ct);
            Assert.True(status == 403, $"POST {path}: {response}");
        }

        // Refused by the sidecar before evaluation (400, flag DPE): a lowercase standard method, an encoded slash or backslash.
        foreach (var head in new[] { "post /charges", "POST /%2Fcharges", "POST /%5Ccharges" })
        {
            var (status, response) = await mesh.SendRawAsync(mesh.OtherSvid, $"{head} HTTP/1.1\r\n{Host}\r\n", Ct);
            Assert.True(status == 400 && response.Contains($"{LocalReply.FlagsHeader}: DPE", StringComparison.OrdinalIgnoreCase), $"{head}: {response}");
        }

        // An encoded NUL: Kestrel refuses it itself, before the pipeline; either way it is a 400.
        var (nul, nulResponse) = await mesh.SendRawAsync(mesh.OtherSvid, $"POST /charges%00 HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(nul == 400, nulResponse);

        // A duplicated header cannot dodge a DENY: any copy matching denies, in either order.
        foreach (var headers in new[] { "x-debug: 0\r\nx-debug: 1\r\n", "x-debug: 1\r\nx-debug: 0\r\n", "x-debug: 0, 1\r\nx-debug: 1\r\n" })
        {
            var (status, response) = await mesh.SendRawAsync("store", $"POST /charges HTTP/1.1\r\n{Host}{headers}\r\n", Ct);
            Assert.True(status == 403, $"{headers}: {response}");
        }

        Assert.Equal(0, mesh.App.Count);
        Assert.Equal(3, await mesh.DecisionsAsync("reject", "none", Ct));
        Assert.Equal(3, await mesh.DecisionsAsync("deny", "test/no-debug", Ct));

        // The store, spelling its path oddly, is allowed, and the app receives the path that was matched.
        var (ok, body) = await mesh.SendRawAsync("store", $"POST //ch%61rges/./?q=%2F HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(ok == 403, body); // "/charges/" is not "/charges": paths match exactly
        (ok, body) = await mesh.SendRawAsync("store", $"POST /x/..//ch%61rges?q=%2F HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(ok == 200, body);
        Assert.Equal(["POST /charges?q=%2F"], mesh.App.Received);
    }

    [Fact]
    public async Task The_app_receives_the_exact_normalized_spelling()
    {
        await using var mesh = await IntegrationMesh.StartAsync(string.Empty);
        const string Host = "Host: billing\r\nConnection: close\r\n";
        var (status, body) = await mesh.SendRawAsync("store", $"GET /a/%40b/%7e/%e2%82%ac/../c%21?x=%26 HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(status == 200, body);

        // %40 and %21 stay encoded (YARP would send its own re-encoding of the decoded path), %7e is '~',
        // hex is uppercased, and the query is passed on as sent.
        Assert.Equal(["GET /a/%40b/~/c%21?x=%26"], mesh.App.Received);
    }

    [Fact]
    public async Task Path_parameters_are_refused_so_a_deny_cannot_be_dodged_with_a_semicolon()
    {
        // Issue 19 item 6: with DENY /admin/*, these reached the app, which a servlet container maps under /admin.
        await using var mesh = await IntegrationMesh.StartAsync("""
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: { name: no-admin, namespace: test }
            spec:
              action: DENY
              rules:
                - to: [{ operation: { paths: ["/admin", "/admin/*"] } }]
            """);
        const string Host = "Host: billing\r\nConnection: close\r\n";

        foreach (var path in new[] { "/admin;x", "/admin;x/y", "/public/..;/admin/x", "/admin%3Bx", "/admin%3bx/y" })
        {
            var (status, response) = await mesh.SendRawAsync("store", $"GET {path} HTTP/1.1\r\n{Host}\r\n", Ct);
            Assert.True(status == 400 && response.Contains($"{LocalReply.FlagsHeader}: DPE", StringComparison.OrdinalIgnoreCase) &&
                        response.Contains("PathParameter", StringComparison.Ordinal), $"GET {path}: {response}");
        }

        Assert.Equal(0, mesh.App.Count);
        Assert.Equal(5, await mesh.DecisionsAsync("reject", "none", Ct));
        Assert.Contains(mesh.BillingLog.WithEvent(4003), l => l.Contains("/public/..;/admin/x", StringComparison.Ordinal));

        // A denial names the path as sent and as matched.
        var (denied, deniedResponse) = await mesh.SendRawAsync("store", $"GET /public/../%61dmin/x HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(denied == 403, deniedResponse);
        var line = Assert.Single(mesh.BillingLog.WithEvent(4001));
        Assert.Contains("GET /admin/x (sent as /public/../%61dmin/x)", line, StringComparison.Ordinal);
        Assert.Equal(0, mesh.App.Count);
    }

    private const string NoAdmin = """
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: no-admin, namespace: test }
        spec:
          action: DENY
          rules:
            - to: [{ operation: { paths: ["/admin", "/admin/*"] } }]
        """;

    [Fact]
    public async Task Stripped_path_parameters_are_matched_and_forwarded_as_a_servlet_container_reads_them()
    {
        await using var mesh = await IntegrationMesh.StartAsync(NoAdmin, meshConfig: "  pathNormalization: { pathParameters: STRIP }");
        const string Host = "Host: billing\r\nConnection: close\r\n";
        await ExpectEachAsync(mesh, 403, "/admin;x", "/admin;x/y", "/public/..;/admin/x", "/admin;a=1;b=2");

        // An encoded ';' is still refused: frameworks disagree on whether it is decoded before the cut.
        var (encoded, encodedResponse) = await mesh.SendRawAsync("store", $"GET /admin%3Bx HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(encoded == 400 && encodedResponse.Contains("PathParameter", StringComparison.Ordinal), encodedResponse);

        var (ok, body) = await mesh.SendRawAsync("store", $"GET /public;jsessionid=0123/page?q=1 HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(ok == 200, body);
        Assert.Equal(["GET /public/page?q=1"], mesh.App.Received);
        Assert.Contains(mesh.BillingLog.WithEvent(4001), l => l.Contains("GET /admin/x (sent as /public/..;/admin/x)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Decode_and_merge_slashes_reads_encoded_slashes_as_separators()
    {
        await using var mesh = await IntegrationMesh.StartAsync(NoAdmin, meshConfig: "  pathNormalization: { normalization: DECODE_AND_MERGE_SLASHES }");
        const string Host = "Host: billing\r\nConnection: close\r\n";
        await ExpectEachAsync(mesh, 403, "/admin%2Fx", "/public%2F..%2Fadmin", "/public%5C..%5Cadmin%2f%2fx", "/public\\..\\admin");

        var (ok, body) = await mesh.SendRawAsync("store", $"GET /a%5Cb//c%2fd HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(ok == 200, body);
        Assert.Equal(["GET /a/b/c/d"], mesh.App.Received);
    }

    [Fact]
    public async Task Base_keeps_empty_segments_and_encoded_slashes_and_the_app_gets_that_exact_spelling()
    {
        await using var mesh = await IntegrationMesh.StartAsync(NoAdmin, meshConfig: "  pathNormalization: { normalization: BASE }");
        const string Host = "Host: billing\r\nConnection: close\r\n";

        // Not /admin to BASE: "//admin" keeps its empty segment and "%2F" stays encoded (Istio's BASE; why it is not the default).
        await ExpectEachAsync(mesh, 200, "/x/..//admin", "/admin%2fx");

        var (denied, deniedResponse) = await mesh.SendRawAsync("store", $"GET /x\\..\\%61dmin HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(denied == 403, deniedResponse);
        Assert.Equal(["GET //admin", "GET /admin%2Fx"], mesh.App.Received);
    }

    [Fact]
    public async Task None_matches_and_forwards_the_path_exactly_as_sent()
    {
        await using var mesh = await IntegrationMesh.StartAsync(NoAdmin, meshConfig: "  pathNormalization: { normalization: NONE, pathParameters: KEEP }");
        const string Host = "Host: billing\r\nConnection: close\r\n";
        var (denied, deniedResponse) = await mesh.SendRawAsync("store", $"GET /admin/x HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(denied == 403, deniedResponse);

        // What NONE means: these are not "/admin/*" to policy, and the app receives them byte for byte (neither the
        // sidecar nor System.Uri resolves "..", decodes "%61" or cuts at ';'); an app that does is open to them.
        string[] paths = ["/public/../admin/x", "/%61dmin/x", "/admin;x", "/a//b"];
        await ExpectEachAsync(mesh, 200, paths);

        Assert.Equal(paths.Select(p => $"GET {p}"), mesh.App.Received);

        // Still refused in every mode: an encoded NUL and a broken escape.
        var (broken, brokenResponse) = await mesh.SendRawAsync("store", $"GET /a%zz HTTP/1.1\r\n{Host}\r\n", Ct);
        Assert.True(broken == 400, brokenResponse);
    }

    /// <summary>Each path, sent by the store as a raw GET to billing, answers <paramref name="expected"/>.</summary>
    private static async Task ExpectEachAsync(IntegrationMesh mesh, int expected, params string[] paths)
    {
        foreach (var path in paths)
        {
            var (status, response) = await mesh.SendRawAsync("store", $"GET {path} HTTP/1.1\r\nHost: billing\r\nConnection: close\r\n\r\n", Ct);
            Assert.True(status == expected, $"GET {path}: {response}");
        }
    }

    [Fact]
    public async Task A_dry_run_deny_counts_would_deny_without_denying()
    {
        await using var mesh = await IntegrationMesh.StartAsync("""
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata:
              name: trial-deny
              namespace: test
              annotations: { istio.io/dry-run: "true" }
            spec:
              action: DENY
              rules:
                - to: [{ operation: { methods: ["POST"] } }]
            """);

        await mesh.ExpectAsync(mesh.Other, HttpMethod.Post, "/charges", HttpStatusCode.OK, Ct);
        await mesh.ExpectAsync(mesh.Other, HttpMethod.Get, "/charges", HttpStatusCode.OK, Ct);

        Assert.Equal(2, mesh.App.Count);
        Assert.Equal(1, await mesh.DecisionsAsync("would_deny", "test/trial-deny", Ct));
        Assert.Equal(2, await mesh.DecisionsAsync("allow", "none", Ct));
        var line = Assert.Single(mesh.BillingLog.WithEvent(4002));
        Assert.Contains("POST /charges", line, StringComparison.Ordinal);
        Assert.Contains("test/trial-deny", line, StringComparison.Ordinal);
        Assert.Empty(mesh.BillingLog.WithEvent(4001));
    }

    [Fact]
    public async Task An_audit_policy_logs_and_counts_what_it_matches_and_decides_nothing()
    {
        // Issue 19 item 5: AUDIT decisions were evaluated and never reported.
        await using var mesh = await IntegrationMesh.StartAsync(OnlyStoreCharges + """

            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: { name: audit-charges, namespace: test }
            spec:
              action: AUDIT
              rules:
                - to: [{ operation: { paths: ["/charges"] } }]
            """);

        await mesh.ExpectAsync(mesh.Store, HttpMethod.Post, "/charges", HttpStatusCode.OK, Ct);
        await mesh.ExpectAsync(mesh.Other, HttpMethod.Post, "/charges", HttpStatusCode.Forbidden, Ct);
        await mesh.ExpectAsync(mesh.Other, HttpMethod.Get, "/hello", HttpStatusCode.OK, Ct);

        // Both requests to /charges audited, whatever their fate; the GET elsewhere not.
        Assert.Equal(2, await mesh.AuditedAsync("test/audit-charges", Ct));
        var lines = mesh.BillingLog.WithEvent(4005);
        Assert.Equal(2, lines.Count);
        Assert.Contains(lines, l => l.Contains("POST /charges", StringComparison.Ordinal) && l.Contains("allowed by ALLOW policy test/store-charges", StringComparison.Ordinal) &&
                                     l.Contains("/sa/store", StringComparison.Ordinal) && l.Contains("test/audit-charges", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("POST /charges", StringComparison.Ordinal) && l.Contains("denied", StringComparison.Ordinal) &&
                                     l.Contains("/sa/other", StringComparison.Ordinal));

        // The AUDIT policy decided nothing: the store's POST and the GET reached the app, the other's POST did not.
        Assert.Equal(2, mesh.App.Count);
    }

    [Fact]
    public async Task Without_a_policy_every_caller_is_allowed()
    {
        await using var mesh = await IntegrationMesh.StartAsync(string.Empty);
        using var response = await mesh.SendAsync(mesh.Other, HttpMethod.Post, "/charges", Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1, mesh.App.Count);
        Assert.Equal(1, await mesh.DecisionsAsync("allow", "none", Ct));
    }

    [Fact]
    public async Task A_plaintext_caller_has_no_principal_and_a_principal_based_allow_denies_it()
    {
        await using var mesh = await IntegrationMesh.StartAsync(OnlyStoreCharges, mode: "PERMISSIVE");
        using var plain = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(15) };

        using (var post = await plain.PostAsync(new Uri(mesh.Billing.InboundUri, "/charges"), new StringContent("{}"), Ct))
        {
            Assert.Equal(HttpStatusCode.Forbidden, post.StatusCode);
        }

        Assert.Contains("(plaintext)", Assert.Single(mesh.BillingLog.WithEvent(4001)), StringComparison.Ordinal);

        // The GET rule names no principal, so it holds for plaintext too.
        using (var get = await plain.GetAsync(new Uri(mesh.Billing.InboundUri, "/charges"), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        }

        Assert.Equal(["GET /charges"], mesh.App.Received);
        Assert.Equal(1, mesh.Billing.Identity.Counters.PlaintextAccepted);
    }

    [Fact]
    public async Task A_connection_sni_condition_matches_the_server_name_of_the_callers_handshake()
    {
        const string OnlyBillingSni = """
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: { name: sni, namespace: test }
            spec:
              action: ALLOW
              rules:
                - when: [{ key: connection.sni, values: ["billing.test"] }]
            """;
        await using var mesh = await IntegrationMesh.StartAsync(OnlyBillingSni);
        var pki = MeshPki.Shared;
        var port = mesh.Billing.Inbound.Port;

        // curl as a mesh peer: the store's SVID as client certificate, the server name chosen by --resolve.
        async Task<string> StatusWithSniAsync(string serverName)
        {
            await using var curl = ExternalProcess.Start("curl",
            [
                "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                "--cert", pki.Cert("store"), "--key", pki.Key("store"),
                "--resolve", $"{serverName}:{port}:127.0.0.1", $"https://{serverName}:{port}/charges",
            ]);
            Assert.Equal(0, await curl.WaitForExitAsync(TimeSpan.FromSeconds(20)));
            return curl.Output.Trim();
        }

        Assert.Equal("200", await StatusWithSniAsync("billing.test"));
        Assert.Equal("403", await StatusWithSniAsync("other.test"));
        Assert.Equal(["GET /charges"], mesh.App.Received);
    }
}
