using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Tests;

public sealed class AuthorizationPolicyParserTests
{
    private const string Header = """
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata:
          name: store-charges
          namespace: billing

        """;

    private static ParseResult Parse(string body) => ResourceParser.ParseText(Header + body, "policy.yaml");

    private static AuthorizationPolicyResource Single(string body)
    {
        var result = Parse(body).ThrowIfInvalid();
        return Assert.IsType<AuthorizationPolicyResource>(Assert.Single(result.Resources));
    }

    private static ConfigDiagnostic SingleError(string body) => Assert.Single(Parse(body).Errors);

    /// <summary>The error at a field path; others may accompany it (an unknown field also leaves its parent empty).</summary>
    private static ConfigDiagnostic ErrorAt(string body, string path)
    {
        var result = Parse(body);
        Assert.Empty(result.Resources);
        return Assert.Single(result.Errors, e => e.FieldPath == path);
    }

    [Fact]
    public void Reads_every_field_with_istio_names()
    {
        var policy = Single("""
            spec:
              selector:
                matchLabels:
                  app: billing
              action: DENY
              rules:
              - from:
                - source:
                    principals: ["cluster.local/ns/store/sa/store", "spiffe://cluster.local/ns/ops/sa/*"]
                    notPrincipals: ["*/sa/legacy"]
                    namespaces: ["store"]
                    notNamespaces: ["dev"]
                    ipBlocks: ["10.0.0.0/8", "fd00::/8"]
                    notIpBlocks: ["10.9.0.1"]
                to:
                - operation:
                    hosts: ["billing.example.com", "*.billing"]
                    notHosts: ["internal.billing"]
                    ports: ["8080", 9090]
                    notPorts: ["9091"]
                    methods: ["POST"]
                    notMethods: ["DELETE"]
                    paths: ["/charges", "/charges/*"]
                    notPaths: ["*.json"]
                when:
                - key: request.headers[X-Tenant]
                  values: ["acme"]
                - key: source.ip
                  notValues: ["192.168.0.0/16"]
                - key: destination.port
                  values: ["8080"]
            """);

        Assert.Equal("billing", policy.Metadata.Namespace);
        Assert.Equal(AuthorizationAction.Deny, policy.Spec.Action);
        Assert.Equal("billing", policy.Spec.MatchLabels["app"]);
        Assert.False(policy.Spec.DryRun);
        var rule = Assert.Single(policy.Spec.Rules);
        var source = Assert.Single(rule.From);
        Assert.Equal(["cluster.local/ns/store/sa/store", "cluster.local/ns/ops/sa/*"], source.Principals);
        Assert.Equal(["10.0.0.0/8", "fd00::/8"], source.IpBlocks);
        var operation = Assert.Single(rule.To);
        Assert.Equal([8080, 9090], operation.Ports);
        Assert.Equal([9091], operation.NotPorts);
        Assert.Equal(["/charges", "/charges/*"], operation.Paths);
        Assert.Equal(3, rule.When.Count);
        Assert.Equal("x-tenant", rule.When[0].HeaderName);
    }

    [Fact]
    public void Action_defaults_to_allow_and_no_rules_is_kept_as_no_rules()
    {
        // Istio: an ALLOW policy without rules matches nothing, so it denies every request.
        var policy = Single("spec: {}\n");
        Assert.Equal(AuthorizationAction.Allow, policy.Spec.Action);
        Assert.Empty(policy.Spec.Rules);
        Assert.Empty(policy.Spec.MatchLabels);
    }

    [Fact]
    public void An_empty_rule_is_a_rule_without_constraints()
    {
        var policy = Single("""
            spec:
              action: DENY
              rules:
              - {}
            """);
        var rule = Assert.Single(policy.Spec.Rules);
        Assert.Empty(rule.From);
        Assert.Empty(rule.To);
        Assert.Empty(rule.When);
    }

    [Theory]
    [InlineData("annotation", "metadata:\n  annotations:\n    istio.io/dry-run: \"true\"\n")]
    [InlineData("field", "")]
    public void Dry_run_comes_from_the_annotation_or_the_field(string how, string extraMeta)
    {
        var yaml = $"""
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            {(extraMeta.Length > 0 ? extraMeta.TrimEnd() + "\n  name: p\n  namespace: billing" : "metadata:\n  name: p\n  namespace: billing")}
            spec:
              action: DENY
              {(how == "field" ? "dryRun: true" : "")}
              rules:
              - {"{}"}
            """;
        var result = ResourceParser.ParseText(yaml, "p.yaml").ThrowIfInvalid();
        var policy = Assert.IsType<AuthorizationPolicyResource>(Assert.Single(result.Resources));
        Assert.True(policy.Spec.DryRun);
    }

    [Fact]
    public void A_dry_run_annotation_that_is_not_a_boolean_is_an_error()
    {
        var result = ResourceParser.ParseText("""
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata:
              name: p
              annotations:
                istio.io/dry-run: "yes"
            spec: {}
            """, "p.yaml");
        var error = Assert.Single(result.Errors);
        Assert.Equal("metadata.annotations.istio.io/dry-run", error.FieldPath);
        Assert.Empty(result.Resources);
    }

    [Fact]
    public void Invalid_cidr_is_reported_with_file_line_and_field()
    {
        var error = SingleError("""
            spec:
              rules:
              - from:
                - source:
                    ipBlocks: ["10.0.0.0/8", "10.0.0.0/33"]
            """);
        Assert.Equal("policy.yaml", error.File);
        Assert.Equal(10, error.Line);
        Assert.Equal("spec.rules[0].from[0].source.ipBlocks[1]", error.FieldPath);
        Assert.Contains("10.0.0.0/33", error.Reason);
    }

    [Theory]
    [InlineData("ports: [\"0\"]", "spec.rules[0].to[0].operation.ports[0]", "not a port")]
    [InlineData("ports: [\"65536\"]", "spec.rules[0].to[0].operation.ports[0]", "not a port")]
    [InlineData("notPorts: [\"http\"]", "spec.rules[0].to[0].operation.notPorts[0]", "not a port")]
    [InlineData("methods: [\"post\"]", "spec.rules[0].to[0].operation.methods[0]", "write 'POST'")]
    [InlineData("methods: [\"GET*\"]", "spec.rules[0].to[0].operation.methods[0]", "match exactly")]
    [InlineData("paths: [\"/a/../admin\"]", "spec.rules[0].to[0].operation.paths[0]", "not a normalized path")]
    [InlineData("paths: [\"//admin\"]", "spec.rules[0].to[0].operation.paths[0]", "not a normalized path")]
    [InlineData("paths: [\"/%61dmin\"]", "spec.rules[0].to[0].operation.paths[0]", "not a normalized path")]
    [InlineData("paths: [\"admin\"]", "spec.rules[0].to[0].operation.paths[0]", "must start with '/'")]
    [InlineData("paths: [\"/a/*/b\"]", "spec.rules[0].to[0].operation.paths[0]", "'*' may only")]
    [InlineData("paths: [\"/users/{id}\"]", "spec.rules[0].to[0].operation.paths[0]", "templates")]
    [InlineData("hosts: [\"billing:8080\"]", "spec.rules[0].to[0].operation.hosts[0]", "without the port")]
    [InlineData("verbs: [\"GET\"]", "spec.rules[0].to[0].operation.verbs", "unknown field")]
    public void Operation_values_are_validated(string field, string path, string reason)
    {
        var error = ErrorAt($"""
            spec:
              rules:
              - to:
                - operation:
                    {field}
            """, path);
        Assert.Equal(path, error.FieldPath);
        Assert.Contains(reason, error.Reason);
    }

    [Theory]
    [InlineData("request.auth.claims[]", "not a claim key")]
    [InlineData("request.auth.claims[a]x", "not a claim key")]
    [InlineData("request.auth.issuer", "unknown key")]
    [InlineData("remote.ip", "X-Forwarded-For")]
    [InlineData("destination.labels[app]", "unknown key")]
    [InlineData("request.headers[]", "not a header name")]
    public void Unsupported_when_keys_are_errors(string key, string reason)
    {
        var error = SingleError($"""
            spec:
              rules:
              - when:
                - key: {key}
                  values: ["x"]
            """);
        Assert.Equal("spec.rules[0].when[0].key", error.FieldPath);
        Assert.Contains(reason, error.Reason);
    }

    [Theory]
    [InlineData("- key: destination.port\n      values: [\"70000\"]", "spec.rules[0].when[0].values[0]")]
    [InlineData("- key: source.ip\n      values: [\"not-an-ip\"]", "spec.rules[0].when[0].values[0]")]
    [InlineData("- key: source.namespace", "spec.rules[0].when[0]")]
    public void Condition_values_are_validated(string when, string path)
    {
        var error = SingleError($"""
            spec:
              rules:
              - when:
                {when}
            """);
        Assert.Equal(path, error.FieldPath);
    }

    [Theory]
    [InlineData("from: []", "spec.rules[0].from", "must not be empty")]
    [InlineData("from:\n    - source: {}", "spec.rules[0].from[0].source", "at least one")]
    [InlineData("to:\n    - {}", "spec.rules[0].to[0].operation", "is required")]
    [InlineData("from:\n    - source:\n        requestPrincipals: [\"a*b\"]", "spec.rules[0].from[0].source.requestPrincipals[0]", "'*' may only stand alone")]
    [InlineData("from:\n    - source:\n        remoteIpBlocks: [\"1.2.3.4\"]", "spec.rules[0].from[0].source.remoteIpBlocks", "X-Forwarded-For")]
    public void Ambiguous_or_unsupported_rules_are_refused_not_ignored(string rule, string path, string reason)
    {
        var error = ErrorAt($"""
            spec:
              rules:
              - {rule}
            """, path);
        Assert.Equal(path, error.FieldPath);
        Assert.Contains(reason, error.Reason);
    }

    [Theory]
    [InlineData("action: CUSTOM", "spec.provider", "is required")]
    [InlineData("action: CUSTOM\n  provider: {}", "spec.provider.name", "is required")]
    [InlineData("action: CUSTOM\n  provider: { name: opa, port: 1 }", "spec.provider.port", "unknown field")]
    [InlineData("action: DENY\n  provider: { name: opa }", "spec.provider", "only for action CUSTOM")]
    [InlineData("action: CUSTOM\n  provider: { name: opa }\n  dryRun: true", "spec.dryRun", "provider's")]
    [InlineData("action: REJECT", "spec.action", "not one of")]
    [InlineData("targetRefs: []", "spec.targetRefs", "selector")]
    [InlineData("action: AUDIT\n  dryRun: true", "spec.dryRun", "ALLOW and DENY")]
    public void Spec_level_errors(string spec, string path, string reason)
    {
        var error = SingleError($"spec:\n  {spec}\n");
        Assert.Equal(path, error.FieldPath);
        Assert.Contains(reason, error.Reason);
    }

    [Fact]
    public void A_custom_policy_names_its_provider()
    {
        var policy = Single("""
            spec:
              action: CUSTOM
              provider:
                name: opa
              rules:
              - to:
                - operation:
                    paths: ["/api/*"]
            """);
        Assert.Equal(AuthorizationAction.Custom, policy.Spec.Action);
        Assert.Equal("opa", policy.Spec.Provider);
    }

    [Fact]
    public void A_deny_on_an_exact_path_alone_warns_that_the_subtree_is_open()
    {
        var result = Parse("""
            spec:
              action: DENY
              rules:
              - to:
                - operation:
                    paths: ["/admin"]
            """);
        Assert.True(result.IsValid);
        var warning = Assert.Single(result.Warnings);
        Assert.Contains("/admin/*", warning.Reason);

        var covered = Parse("""
            spec:
              action: DENY
              rules:
              - to:
                - operation:
                    paths: ["/admin", "/admin/*"]
            """);
        Assert.Empty(covered.Warnings);
    }

    [Theory]
    [InlineData("10.1.2.3", "10.1.2.3/32")]
    [InlineData("10.1.2.3/16", "10.1.0.0/16")]
    [InlineData("0.0.0.0/0", "0.0.0.0/0")]
    [InlineData("fd00::1/8", "fd00::/8")]
    public void Cidrs_clear_host_bits(string text, string expected)
    {
        Assert.True(Cidrs.TryParse(text, out var network));
        Assert.Equal(expected, network.ToString());
    }

    [Theory]
    [InlineData("10.0.0.0/33")]
    [InlineData("10.0.0/8")]
    [InlineData("10.0.0.0/-1")]
    [InlineData("10.0.0.0/")]
    [InlineData("fe80::1%eth0")]
    [InlineData("")]
    public void Cidrs_refuse_what_is_not_a_block(string text) => Assert.False(Cidrs.TryParse(text, out _));
}
