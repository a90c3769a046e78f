using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Egress;

namespace MeshProxy.Sidecar.Tests.Egress;

/// <summary>The compiled matcher, table-driven: which policies apply to a workload, and what each admits.</summary>
public sealed class EgressRulesTests
{
    private const string Policies = """
        apiVersion: meshproxy.io/v1alpha1
        kind: Sidecar
        metadata: { name: billing, namespace: shop, labels: { app: billing } }
        spec: { app: { port: 8080 } }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: EgressPolicy
        metadata: { name: payments, namespace: shop }
        spec:
          selector: { matchLabels: { app: billing } }
          hosts: [api.payments.test, "*.example.test"]
          ports: [{ number: 443, protocol: HTTPS }, { number: 80, protocol: HTTP }]
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: EgressPolicy
        metadata: { name: store-only, namespace: shop }
        spec:
          selector: { matchLabels: { app: store } }
          hosts: [store-only.test]
          ports: [{ number: 443, protocol: TLS }]
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: EgressPolicy
        metadata: { name: other-namespace, namespace: elsewhere }
        spec:
          hosts: [elsewhere.test]
          ports: [{ number: 443, protocol: TLS }]
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: EgressPolicy
        metadata: { name: mesh-wide, namespace: meshproxy-system }
        spec:
          hosts: [mesh-wide.test]
          ports: [{ number: 5432, protocol: TCP }]
        """;

    public static TheoryData<string, int, string, string?> Cases => new()
    {
        { "api.payments.test", 443, "Tls", "shop/payments" },
        { "API.Payments.Test.", 443, "Tls", "shop/payments" },  // case and a trailing dot do not matter
        { "api.payments.test", 80, "Http", "shop/payments" },
        { "api.payments.test", 443, "Http", null },            // 443 is HTTPS: not for plain HTTP
        { "api.payments.test", 80, "Tls", null },              // 80 is HTTP: not for TLS
        { "api.payments.test", 8443, "Tls", null },            // port not listed
        { "api.payments.test", 443, "Tunnel", "shop/payments" }, // CONNECT admits any protocol of the port
        { "a.example.test", 443, "Tls", "shop/payments" },
        { "a.b.c.example.test", 80, "Http", "shop/payments" },
        { "example.test", 443, "Tls", null },                  // *.x does not match x itself
        { "badexample.test", 443, "Tls", null },               // a suffix only at a label boundary
        { "example.test.evil", 443, "Tls", null },
        { "store-only.test", 443, "Tls", null },               // selector picks another workload
        { "elsewhere.test", 443, "Tls", null },                // another namespace
        { "mesh-wide.test", 5432, "Tunnel", "meshproxy-system/mesh-wide" }, // the root namespace reaches everyone
        { "mesh-wide.test", 5432, "Tls", null },               // TCP is not decided by SNI
        { "", 443, "Tls", null },
        { "unknown.test", 443, "Tls", null },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Registry_only_allows_exactly_what_a_policy_names(string host, int port, string traffic, string? policy)
    {
        var rules = Compile(Policies);
        var decision = rules.Decide(host, port, Enum.Parse<EgressTraffic>(traffic));
        Assert.Equal(policy, decision.Policy);
        Assert.Equal(policy is null ? EgressVerdict.Denied : EgressVerdict.AllowedByPolicy, decision.Verdict);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Allow_any_lets_the_rest_pass_but_still_names_the_policy(string host, int port, string traffic, string? policy)
    {
        var rules = Compile(Policies + """

            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: meshproxy-system }
            spec: { outboundTrafficPolicy: { mode: ALLOW_ANY } }
            """);
        var decision = rules.Decide(host, port, Enum.Parse<EgressTraffic>(traffic));
        Assert.Equal(policy, decision.Policy);
        Assert.Equal(policy is null ? EgressVerdict.AllowedAny : EgressVerdict.AllowedByPolicy, decision.Verdict);
    }

    [Fact]
    public void Only_the_policies_that_apply_are_counted()
    {
        Assert.Equal(2, Compile(Policies).PolicyCount);
    }

    private static EgressRules Compile(string yaml)
    {
        var parsed = ResourceParser.ParseText(yaml, "policies.yaml");
        parsed.ThrowIfInvalid();
        var mesh = parsed.OfKind<MeshConfigResource>().FirstOrDefault()?.Spec ?? MeshConfigSpec.Default;
        return EgressRules.Compile(parsed.OfKind<EgressPolicyResource>(), parsed.OfKind<SidecarResource>().Single(), mesh);
    }
}
