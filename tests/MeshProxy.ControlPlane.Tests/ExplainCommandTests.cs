using System.Diagnostics;
using MeshProxy.Cli;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests;

/// <summary>meshproxy explain against a config directory: the decision, the policy and rule that made it, the exit code.</summary>
public sealed class ExplainCommandTests
{
    private const string Policies = """
        apiVersion: meshproxy.io/v1alpha1
        kind: Sidecar
        metadata: { name: billing, namespace: shop }
        spec:
          workload: { serviceAccount: billing, labels: { app: billing } }
          app: { port: 8080 }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: store-charges, namespace: shop }
        spec:
          selector: { matchLabels: { app: billing } }
          action: ALLOW
          rules:
            - from: [{ source: { principals: ["cluster.local/ns/shop/sa/store"] } }]
              to: [{ operation: { methods: ["POST"], paths: ["/charges"] } }]
            - to: [{ operation: { methods: ["GET"] } }]
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: no-admin, namespace: meshproxy-system }
        spec:
          action: DENY
          rules:
            - to: [{ operation: { paths: ["/admin", "/admin/*"] } }]

        """;

    /// <summary>billing's CUSTOM policy: requests to /charges* go to provider opa (on TCP, read as a DENY rule: every connection).</summary>
    private const string OpaCustom = """
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: opa, namespace: shop }
        spec:
          action: CUSTOM
          provider: { name: opa }
          rules:
            - to: [{ operation: { paths: ["/charges*"] } }]
        """;

    private static (int Code, string Output) Explain(string dir, string? source, string method, string path, string? labels = null)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = ExplainCommand.Run(new ExplainCommand.Query(dir, "shop/billing", labels, source, "127.0.0.1", method, "billing", 80, path, []), output, error);
        return (code, output + error.ToString());
    }

    [Fact]
    public void Jwt_claims_are_checked_against_request_authentication_then_matched_by_policy()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "policies.yaml", Policies + """
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: RequestAuthentication
            metadata: { name: jwt, namespace: shop }
            spec:
              jwtRules:
              - issuer: https://issuer.example
                audiences: [billing]
                jwksUri: https://issuer.example/jwks
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: { name: admins-refund, namespace: shop }
            spec:
              rules:
                - from: [{ source: { requestPrincipals: ["https://issuer.example/*"] } }]
                  to: [{ operation: { paths: ["/refunds"] } }]
                  when: [{ key: "request.auth.claims[groups]", values: ["admins"] }]
            """);
        (int, string) Run(string? claims)
        {
            var output = new StringWriter();
            var code = ExplainCommand.Run(new ExplainCommand.Query(dir, "shop/billing", null, null, "127.0.0.1", "POST", "billing", 80, "/refunds", [], claims), output, output);
            return (code, output.ToString());
        }

        var (code, text) = Run("""{"iss":"https://issuer.example","sub":"alice","aud":"billing","groups":["admins"]}""");
        Assert.Equal(0, code);
        Assert.Contains("allowed by ALLOW policy shop/admins-refund rule 0", text, StringComparison.Ordinal);
        Assert.Contains("jwt:       request principal https://issuer.example/alice", text, StringComparison.Ordinal);

        (code, text) = Run("""{"iss":"https://issuer.example","sub":"bob","aud":"billing","groups":["staff"]}""");
        Assert.Equal(1, code);
        Assert.StartsWith("DENY (403)", text, StringComparison.Ordinal);

        (code, text) = Run("""{"iss":"https://issuer.example","sub":"alice","aud":"other","groups":["admins"]}""");
        Assert.Equal(1, code);
        Assert.StartsWith("DENY (401)", text, StringComparison.Ordinal);
        Assert.Contains("aud names none", text, StringComparison.Ordinal);

        (code, text) = Run("""{"iss":"https://evil.example","sub":"alice"}""");
        Assert.StartsWith("DENY (401)", text, StringComparison.Ordinal);

        (code, _) = Run("[1]");
        Assert.Equal(2, code);
    }

    [Fact]
    public void A_custom_policy_names_the_provider_that_would_be_asked_or_why_the_request_is_denied_without_asking()
    {
        const string Mesh = """
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: meshproxy-system }
            spec:
              extensionProviders:
              - name: opa
                envoyExtAuthzGrpc: { service: opa.opa-system.svc.cluster.local, port: 9191, timeout: 500ms, statusOnError: "503" }
            """;
        const string Store = "spiffe://cluster.local/ns/shop/sa/store";
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "policies.yaml", Policies + OpaCustom + "\n" + Mesh);

        var (code, text) = Explain(dir, Store, "POST", "/charges");
        Assert.Equal(0, code);
        Assert.StartsWith("ALLOW, if provider opa allows\n", text, StringComparison.Ordinal);
        Assert.Contains("custom:    provider opa is asked first (by CUSTOM policy shop/opa rule 0): envoy.service.auth.v3 Check to opa.opa-system.svc.cluster.local:9191 in plaintext h2c (not a mesh Service with sidecar endpoints), timeout 500ms; the request body is not sent (no includeRequestBodyInCheck); if it fails the request is denied with 503", text, StringComparison.Ordinal);

        // Not matched by the CUSTOM rules: the provider is not asked, the policies alone decide.
        (code, text) = Explain(dir, Store, "GET", "/refunds");
        Assert.Equal(0, code);
        Assert.StartsWith("ALLOW\n", text, StringComparison.Ordinal);
        Assert.Contains("custom:    no CUSTOM policy matches: no provider is asked", text, StringComparison.Ordinal);

        // Without the provider in MeshConfig, the sidecar denies what the CUSTOM policy matches.
        var undefined = RepoPaths.NewTempDirectory();
        Yaml.Write(undefined, "policies.yaml", Policies + OpaCustom);
        (code, text) = Explain(undefined, Store, "POST", "/charges");
        Assert.Equal(1, code);
        Assert.StartsWith("DENY (403)\n", text, StringComparison.Ordinal);
        Assert.Contains("names provider 'opa', which MeshConfig extensionProviders does not define", text, StringComparison.Ordinal);
    }

    /// <summary>
    /// The custom line, per provider setting: how the sidecar reaches the provider (mTLS only to a mesh Service's name
    /// and port whose endpoints run sidecars), what the Check carries (the request body's options), and on a TCP
    /// connection that the provider is asked once per connection and what a failure or denial does to it.
    /// </summary>
    [Theory]
    [InlineData("opa.opa-system.svc.cluster.local, port: 9191", false, "ALLOW, if provider opa allows",
        "Check to opa.opa-system.svc.cluster.local:9191 in plaintext h2c (not a mesh Service with sidecar endpoints), timeout 600s; the request body is not sent (no includeRequestBodyInCheck); if it fails the request is denied with 403")]
    [InlineData("opa.shop.svc.cluster.local, port: 9191", false, "ALLOW, if provider opa allows",
        "Check to opa.shop.svc.cluster.local:9191 over mTLS with the workload's SVID (mesh Service shop/opa, whose sidecar sees this workload's identity), timeout 600s;")]
    [InlineData("opa, port: 9191", false, "ALLOW, if provider opa allows", "Check to opa:9191 over mTLS with the workload's SVID (mesh Service shop/opa,")]
    [InlineData("opa.shop.svc.cluster.local, port: 9292", false, "ALLOW, if provider opa allows", "Check to opa.shop.svc.cluster.local:9292 in plaintext h2c")]
    [InlineData("plain.shop.svc.cluster.local, port: 9191", false, "ALLOW, if provider opa allows", "Check to plain.shop.svc.cluster.local:9191 in plaintext h2c")]
    [InlineData("10.0.0.5, port: 9191", false, "ALLOW, if provider opa allows", "Check to 10.0.0.5:9191 in plaintext h2c")]
    [InlineData("opa.shop.svc.cluster.local, port: 9191, includeRequestBodyInCheck: { maxRequestBytes: 4096 }", false, "ALLOW, if provider opa allows",
        "; the body's first 4096 bytes are held and sent as body (UTF-8), a longer body answered 413 without asking; if it fails the request is denied with 403")]
    [InlineData("opa.shop.svc.cluster.local, port: 9191, includeRequestBodyInCheck: { maxRequestBytes: 512, allowPartialMessage: true, packAsBytes: true }, failOpen: true", false, "ALLOW, if provider opa allows",
        "; the body's first 512 bytes are held and sent as raw_body, a longer body cut to that length (allowPartialMessage); if it fails the request is allowed (failOpen)")]
    [InlineData("opa.shop.svc.cluster.local, port: 9191", true, "DENY (connection closed)",
        "over mTLS with the workload's SVID (mesh Service shop/opa, whose sidecar sees this workload's identity), timeout 600s; once per connection, before any byte moves, with the addresses, the port and the peer's principal (no HTTP attributes); if it fails the connection is closed (statusOnError does not apply); if it denies, the connection is closed")]
    [InlineData("opa.shop.svc.cluster.local, port: 9191, includeRequestBodyInCheck: { maxRequestBytes: 4096 }, failOpen: true", true, "DENY (connection closed)",
        "(no HTTP attributes; includeRequestBodyInCheck does not apply to a byte stream); if it fails the connection is allowed (failOpen); if it denies, the connection is closed")]
    public void The_custom_line_says_how_the_provider_is_reached_what_the_check_carries_and_what_it_does_to_a_tcp_connection(string provider, bool tcp, string verdict, string custom)
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "policies.yaml", Policies + OpaCustom + $$"""

            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: opa, namespace: shop }
            spec:
              ports: [{ port: 9191 }]
              endpoints: [{ address: 10.0.0.5, serviceAccount: opa }]
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: plain, namespace: shop }
            spec:
              ports: [{ port: 9191 }]
              endpoints: [{ address: 10.0.0.6 }]
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: meshproxy-system }
            spec:
              extensionProviders:
              - name: opa
                envoyExtAuthzGrpc: { service: {{provider}} }
            """);
        var output = new StringWriter();
        var code = ExplainCommand.Run(
            new ExplainCommand.Query(dir, "shop/billing", null, "spiffe://cluster.local/ns/shop/sa/store", "10.1.2.3", "POST", "billing", 80, "/charges", [], Tcp: tcp), output, output);
        var text = output.ToString();

        // On TCP the root namespace's DENY of /admin paths is read without its paths and closes the connection after the
        // provider has allowed it: the custom line says what the provider is asked either way.
        Assert.Equal(verdict.StartsWith("ALLOW", StringComparison.Ordinal) ? 0 : 1, code);
        Assert.StartsWith(verdict + "\n", text, StringComparison.Ordinal);
        Assert.Contains("custom:    provider opa is asked first (by CUSTOM policy shop/opa rule 0): envoy.service.auth.v3 ", text, StringComparison.Ordinal);
        Assert.Contains(custom, text, StringComparison.Ordinal);
    }

    [Fact]
    public void Prints_the_decision_and_the_policy_and_rule_that_made_it()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "policies.yaml", Policies);
        const string Store = "spiffe://cluster.local/ns/shop/sa/store";
        const string Other = "spiffe://cluster.local/ns/shop/sa/other";

        var (code, text) = Explain(dir, Store, "POST", "/charges");
        Assert.Equal(0, code);
        Assert.StartsWith("ALLOW\n", text, StringComparison.Ordinal);
        Assert.Contains("allowed by ALLOW policy shop/store-charges rule 0", text, StringComparison.Ordinal);
        Assert.Contains("workload:  shop/billing (app=billing)", text, StringComparison.Ordinal);

        (code, text) = Explain(dir, Other, "POST", "/charges");
        Assert.Equal(1, code);
        Assert.StartsWith("DENY (403)\n", text, StringComparison.Ordinal);
        Assert.Contains("denied: no ALLOW policy matched (1 apply)", text, StringComparison.Ordinal);

        (code, text) = Explain(dir, Other, "GET", "/charges");
        Assert.Equal(0, code);
        Assert.Contains("allowed by ALLOW policy shop/store-charges rule 1", text, StringComparison.Ordinal);

        // The path is normalized as the sidecar does, and a root-namespace DENY wins over the ALLOW.
        (code, text) = Explain(dir, Store, "GET", "/x/..//%61dmin/users");
        Assert.Equal(1, code);
        Assert.Contains("denied by DENY policy meshproxy-system/no-admin rule 0", text, StringComparison.Ordinal);
        Assert.Contains("/admin/users (normalized from /x/..//%61dmin/users, pathNormalization STRICT, pathParameters REJECT)", text, StringComparison.Ordinal);

        (code, text) = Explain(dir, Store, "post", "/charges");
        Assert.Equal(1, code);
        Assert.StartsWith("DENY (400)", text, StringComparison.Ordinal);

        // Labels given on the command line replace the Sidecar's: the selector no longer picks the workload.
        (code, text) = Explain(dir, Other, "POST", "/charges", labels: "app=store");
        Assert.Equal(0, code);
        Assert.Contains("allowed: no ALLOW policy applies", text, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tcp_port_is_judged_as_a_connection_naming_the_rules_whose_http_only_fields_change_their_meaning()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "policies.yaml", Policies + """
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: billing-db, namespace: shop }
            spec:
              ports: [{ port: 5432, protocol: TCP }]
              endpoints: [{ address: 10.0.0.9, serviceAccount: billing }]
            """);
        const string Store = "spiffe://cluster.local/ns/shop/sa/store";
        (int, string) Run(int port, bool tcp = false, string path = "/")
        {
            var output = new StringWriter();
            var code = ExplainCommand.Run(new ExplainCommand.Query(dir, "shop/billing", null, Store, "10.1.2.3", "GET", "billing", port, path, [], Tcp: tcp), output, output);
            return (code, output.ToString());
        }

        // Istio's rule: the DENY of /admin paths is read without its paths, so it denies every connection; neither ALLOW
        // rule (both use methods) can allow one.
        var (code, text) = Run(5432);
        Assert.Equal(1, code);
        Assert.StartsWith("DENY (connection closed)\n", text, StringComparison.Ordinal);
        Assert.Contains("denied by DENY policy meshproxy-system/no-admin rule 0", text, StringComparison.Ordinal);
        Assert.Contains("request:   TCP connection to port 5432 (Service shop/billing-db port 5432 declared TCP) from " + Store, text, StringComparison.Ordinal);
        Assert.Contains(
            "tcp rules: shop/store-charges rule 0 (ALLOW) never matches: it uses HTTP-only fields; shop/store-charges rule 1 (ALLOW) never matches: it uses HTTP-only fields; " +
            "meshproxy-system/no-admin rule 0 (DENY) is read without its HTTP-only fields",
            text,
            StringComparison.Ordinal);

        // Without that DENY, only a rule without HTTP-only fields can allow the connection.
        Yaml.Write(dir, "policies.yaml", Policies.Replace("action: DENY", "action: AUDIT", StringComparison.Ordinal) + """
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: { name: db-clients, namespace: shop }
            spec:
              rules: [{ from: [{ source: { principals: ["cluster.local/ns/shop/sa/store"] } }], to: [{ operation: { ports: ["5432"] } }] }]
            """);
        (code, text) = Run(5432, tcp: true);
        Assert.Equal(0, code);
        Assert.StartsWith("ALLOW\n", text, StringComparison.Ordinal);
        Assert.Contains("allowed by ALLOW policy shop/db-clients rule 0", text, StringComparison.Ordinal);
        Assert.Contains("TCP connection to port 5432 (--tcp)", text, StringComparison.Ordinal);

        // The same workload's HTTP port is still judged as HTTP, unless --tcp says its client is not speaking HTTP.
        (code, text) = Run(80);
        Assert.Equal(0, code);
        Assert.Contains("allowed by ALLOW policy shop/store-charges rule 1", text, StringComparison.Ordinal);
        (code, text) = Run(80, tcp: true, path: "/charges");
        Assert.Equal(1, code);
        Assert.Contains("denied: no ALLOW policy matched", text, StringComparison.Ordinal);
        Assert.Contains("note:      --method, --path, --header and --jwt-claims do not apply to a byte stream", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Paths_are_normalized_as_mesh_config_says()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "policies.yaml", Policies);
        const string Store = "spiffe://cluster.local/ns/shop/sa/store";
        var (code, text) = Explain(dir, Store, "GET", "/public/..;/admin/x");
        Assert.Equal(1, code);
        Assert.StartsWith("DENY (400)", text, StringComparison.Ordinal);
        Assert.Contains("PathParameter (MeshConfig pathNormalization STRICT, pathParameters REJECT)", text, StringComparison.Ordinal);

        Yaml.Write(dir, "mesh.yaml", """
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: meshproxy-system }
            spec:
              pathNormalization: { normalization: MERGE_SLASHES, pathParameters: STRIP }
            """);
        (code, text) = Explain(dir, Store, "GET", "/public/..;/admin/x");
        Assert.Equal(1, code);
        Assert.StartsWith("DENY (403)", text, StringComparison.Ordinal);
        Assert.Contains("/admin/x (normalized from /public/..;/admin/x, pathNormalization MERGE_SLASHES, pathParameters STRIP)", text, StringComparison.Ordinal);

        // MERGE_SLASHES reads '\\' as '/' where STRICT refuses it.
        (code, text) = Explain(dir, Store, "GET", "/x\\..\\admin");
        Assert.Equal(1, code);
        Assert.StartsWith("DENY (403)", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_input_is_exit_2_with_a_reason()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "bad.yaml", Policies.Replace("action: DENY", "action: MAYBE", StringComparison.Ordinal));
        var (code, text) = Explain(dir, null, "GET", "/");
        Assert.Equal(2, code);
        Assert.Contains("a sidecar would refuse this configuration", text, StringComparison.Ordinal);

        (code, text) = Explain(Path.Combine(dir, "missing"), null, "GET", "/");
        Assert.Equal(2, code);
        Assert.Contains("is not a directory", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_meshproxy_binary_exits_0_on_allow_and_1_on_deny()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "policies.yaml", Policies);
        var cli = Path.Combine(AppContext.BaseDirectory, "meshproxy.dll");
        foreach (var (source, expected) in new[] { ("spiffe://cluster.local/ns/shop/sa/store", 0), ("spiffe://cluster.local/ns/shop/sa/other", 1) })
        {
            var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var arg in new[] { cli, "explain", "--config-dir", dir, "--workload", "shop/billing", "--source", source, "--method", "POST", "--host", "billing", "--port", "80", "--path", "/charges" })
            {
                info.ArgumentList.Add(arg);
            }

            using var process = Process.Start(info)!;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            finally
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }
            }

            Assert.Equal(expected, process.ExitCode);
            Assert.StartsWith(expected == 0 ? "ALLOW" : "DENY (403)", await stdout, StringComparison.Ordinal);
        }
    }
}
