using MeshProxy.Authorization;
using static MeshProxy.Sidecar.Tests.Authorization.PolicyFixture;

namespace MeshProxy.Sidecar.Tests.Authorization;

public sealed class AuthorizationEngineTests
{
    private const string NoAllow = "allowed: no ALLOW policy applies";

    private static readonly string StoreCharges = Policy("store-charges", """
        selector:
          matchLabels:
            app: billing
        rules:
        - from:
          - source:
              principals: ["cluster.local/ns/store/sa/store"]
          to:
          - operation:
              methods: ["POST"]
              paths: ["/charges", "/charges/*"]
        - from:
          - source:
              namespaces: ["ops"]
          to:
          - operation:
              methods: ["GET"]
        """);

    [Fact]
    public void Without_policies_everything_is_allowed()
    {
        Check(Engine(string.Empty),
            new Case(NoAllow),
            new Case(NoAllow, Principal: null, Method: "DELETE", Path: "/anything"));
    }

    [Fact]
    public void Only_the_store_may_create_charges_once_an_allow_policy_applies()
    {
        Check(Engine(StoreCharges),
            new Case("allowed by ALLOW policy billing/store-charges rule 0"),
            new Case("allowed by ALLOW policy billing/store-charges rule 0", Path: "/charges/42/refund"),
            new Case("denied: no ALLOW policy matched (1 apply)", Principal: Ops),
            new Case("denied: no ALLOW policy matched (1 apply)", Principal: null),
            new Case("denied: no ALLOW policy matched (1 apply)", Method: "DELETE"),
            new Case("denied: no ALLOW policy matched (1 apply)", Path: "/chargesX"),
            new Case("allowed by ALLOW policy billing/store-charges rule 1", Principal: Ops, Method: "GET", Path: "/reports"));
    }

    [Fact]
    public void Deny_is_evaluated_before_allow()
    {
        var engine = Engine(StoreCharges + Policy("deny-refunds", """
            action: DENY
            rules:
            - to:
              - operation:
                  paths: ["*/refund"]
            """));
        Check(engine,
            new Case("denied by DENY policy billing/deny-refunds rule 0", Path: "/charges/42/refund"),
            new Case("allowed by ALLOW policy billing/store-charges rule 0", Path: "/charges/42"));
    }

    [Fact]
    public void A_deny_only_configuration_allows_what_it_does_not_deny()
    {
        var engine = Engine(Policy("deny-dev", """
            action: DENY
            rules:
            - from:
              - source:
                  namespaces: ["dev"]
            """));
        Check(engine,
            new Case(NoAllow),
            new Case("denied by DENY policy billing/deny-dev rule 0", Principal: "spiffe://cluster.local/ns/dev/sa/tester"));
    }

    [Fact]
    public void Allow_without_rules_allows_nothing_and_an_empty_rule_matches_everything()
    {
        Check(Engine(Policy("allow-nothing", "{}")),
            new Case("denied: no ALLOW policy matched (1 apply)"),
            new Case("denied: no ALLOW policy matched (1 apply)", Principal: null));
        Check(Engine(Policy("allow-all", "rules:\n- {}")),
            new Case("allowed by ALLOW policy billing/allow-all rule 0", Principal: null, Method: "DELETE"));
        Check(Engine(Policy("deny-all", "action: DENY\nrules:\n- {}") + Policy("allow-all", "rules:\n- {}")),
            new Case("denied by DENY policy billing/deny-all rule 0"));
        Check(Engine(Policy("deny-nothing", "action: DENY")),
            new Case(NoAllow));
    }

    [Fact]
    public void Not_forms_exclude_and_a_missing_principal_matches_only_not_forms()
    {
        // The Istio idiom for "mTLS required": DENY requests whose principal is not present.
        var requireMtls = Engine(Policy("require-mtls", """
            action: DENY
            rules:
            - from:
              - source:
                  notPrincipals: ["*"]
            """));
        Check(requireMtls,
            new Case(NoAllow),
            new Case("denied by DENY policy billing/require-mtls rule 0", Principal: null));

        var allowOthers = Engine(Policy("not-dev", """
            rules:
            - from:
              - source:
                  notNamespaces: ["dev"]
                  notIpBlocks: ["10.9.0.0/16"]
              to:
              - operation:
                  notMethods: ["DELETE"]
                  notPaths: ["/internal/*"]
                  notPorts: ["9090"]
                  notHosts: ["admin.billing"]
            """));
        const string allowed = "allowed by ALLOW policy billing/not-dev rule 0";
        const string denied = "denied: no ALLOW policy matched (1 apply)";
        Check(allowOthers,
            new Case(allowed),
            new Case(allowed, Principal: null),
            new Case(denied, Principal: "spiffe://cluster.local/ns/dev/sa/x"),
            new Case(denied, Ip: "10.9.1.1"),
            new Case(denied, Method: "DELETE"),
            new Case(denied, Path: "/internal/keys"),
            new Case(denied, Port: 9090),
            new Case(denied, Host: "Admin.Billing:8080"));
    }

    [Fact]
    public void Prefix_suffix_and_presence_forms()
    {
        var engine = Engine(Policy("forms", """
            rules:
            - from:
              - source:
                  principals: ["cluster.local/ns/store/*"]
              to:
              - operation:
                  paths: ["/api/*", "*.json"]
                  hosts: ["*.example.com"]
            - from:
              - source:
                  principals: ["*"]
              to:
              - operation:
                  paths: ["/health"]
            """));
        const string rule0 = "allowed by ALLOW policy billing/forms rule 0";
        const string denied = "denied: no ALLOW policy matched (1 apply)";
        Check(engine,
            new Case(rule0, Path: "/api/x", Host: "pay.example.com"),
            new Case(rule0, Path: "/v1/data.json", Host: "PAY.EXAMPLE.COM."),
            new Case(denied, Path: "/api", Host: "pay.example.com"),
            new Case(denied, Path: "/api/x", Host: "example.com"),
            new Case(denied, Path: "/api/x", Host: "pay.example.com", Principal: Ops),
            new Case("allowed by ALLOW policy billing/forms rule 1", Path: "/health", Principal: Ops),
            new Case(denied, Path: "/health", Principal: null));
    }

    [Fact]
    public void Ip_blocks_match_cidrs_single_addresses_and_mapped_ipv4()
    {
        var engine = Engine(Policy("nets", """
            rules:
            - from:
              - source:
                  ipBlocks: ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]
            """));
        const string allowed = "allowed by ALLOW policy billing/nets rule 0";
        const string denied = "denied: no ALLOW policy matched (1 apply)";
        Check(engine,
            new Case(allowed, Ip: "10.200.3.4"),
            new Case(allowed, Ip: "::ffff:10.200.3.4"),
            new Case(allowed, Ip: "192.168.1.7"),
            new Case(denied, Ip: "192.168.1.8"),
            new Case(allowed, Ip: "fd12::1"),
            new Case(denied, Ip: "11.0.0.1"),
            new Case(denied, Ip: "::1"));
    }

    [Fact]
    public void Root_namespace_policies_apply_mesh_wide_and_other_namespaces_do_not()
    {
        var yaml = Policy("mesh-deny-dev", """
            action: DENY
            rules:
            - from:
              - source:
                  namespaces: ["dev"]
            """, ns: "meshproxy-system") + Policy("store-only", """
            rules:
            - from:
              - source:
                  namespaces: ["store"]
            """, ns: "shipping");
        var dev = "spiffe://cluster.local/ns/dev/sa/x";
        Check(Engine(yaml),
            new Case("denied by DENY policy meshproxy-system/mesh-deny-dev rule 0", Principal: dev),
            new Case(NoAllow, Principal: Ops));
        Check(Engine(yaml, rootNamespace: "istio-system"),
            new Case(NoAllow, Principal: dev));
        Check(Engine(yaml, workloadNamespace: "shipping"),
            new Case("denied by DENY policy meshproxy-system/mesh-deny-dev rule 0", Principal: dev),
            new Case("denied: no ALLOW policy matched (1 apply)", Principal: Ops),
            new Case("allowed by ALLOW policy shipping/store-only rule 0"));
    }

    [Fact]
    public void Selectors_pick_workloads_by_all_their_labels()
    {
        var yaml = Policy("v1-only", "selector:\n  matchLabels:\n    app: billing\n    version: v1\nrules:\n- from:\n  - source:\n      namespaces: [\"store\"]")
            + Policy("other-app", "selector:\n  matchLabels:\n    app: shipping\naction: DENY\nrules:\n- {}");
        var v1 = Engine(yaml);
        Assert.Equal(["billing/v1-only"], v1.Policies.Select(p => p.Key));
        Check(v1, new Case("allowed by ALLOW policy billing/v1-only rule 0"));

        var v2 = Engine(yaml, labels: new Dictionary<string, string> { ["app"] = "billing", ["version"] = "v2" });
        Assert.Empty(v2.Policies);
        Check(v2, new Case(NoAllow, Principal: Ops));
    }

    [Fact]
    public void Dry_run_policies_report_without_deciding()
    {
        var engine = Engine(StoreCharges + Policy("deny-ops", """
            action: DENY
            rules:
            - from:
              - source:
                  namespaces: ["ops"]
            """, annotations: "istio.io/dry-run: \"true\""));
        Check(engine,
            new Case("allowed by ALLOW policy billing/store-charges rule 1; dry run: would be denied by DENY policy billing/deny-ops rule 0",
                Principal: Ops, Method: "GET"),
            new Case("allowed by ALLOW policy billing/store-charges rule 0; dry run: would be allowed by ALLOW policy billing/store-charges rule 0"));
        var decision = engine.Evaluate(Request(Ops, method: "GET"));
        Assert.True(decision.Allowed);
        Assert.True(decision.WouldDeny);
        Assert.Equal("deny-ops", decision.DryRun!.Value.Policy!.Name);

        // A dry-run ALLOW on a workload without ALLOW policies shows the default deny it would bring.
        var trial = Engine(Policy("trial-allow", "dryRun: true\nrules:\n- from:\n  - source:\n      namespaces: [\"store\"]"));
        Check(trial,
            new Case("allowed: no ALLOW policy applies; dry run: would be allowed by ALLOW policy billing/trial-allow rule 0"),
            new Case("allowed: no ALLOW policy applies; dry run: would be denied: no ALLOW policy matched (1 apply)", Principal: Ops));
        Assert.True(trial.Evaluate(Request(Ops)).WouldDeny);
        Assert.False(trial.Evaluate(Request()).WouldDeny);

        // A dry-run ALLOW could also be the one that would let a denied request through.
        var opening = Engine(StoreCharges + Policy("open-ops-post", "dryRun: true\nrules:\n- from:\n  - source:\n      namespaces: [\"ops\"]"));
        var opened = opening.Evaluate(Request(Ops));
        Assert.False(opened.Allowed);
        Assert.True(opened.WouldAllow);
        Assert.Equal("denied: no ALLOW policy matched (1 apply); dry run: would be allowed by ALLOW policy billing/open-ops-post rule 0", opened.Explain());
    }

    [Fact]
    public void Audit_policies_are_noted_and_never_decide()
    {
        var engine = Engine(StoreCharges + Policy("audit-charges", """
            action: AUDIT
            rules:
            - to:
              - operation:
                  paths: ["/charges"]
            """));
        Check(engine,
            new Case("allowed by ALLOW policy billing/store-charges rule 0; audited by AUDIT policy billing/audit-charges rule 0"),
            new Case("denied: no ALLOW policy matched (1 apply); audited by AUDIT policy billing/audit-charges rule 0", Principal: Ops),
            new Case("allowed by ALLOW policy billing/store-charges rule 0", Path: "/charges/1"));
        Check(Engine(Policy("audit-all", "action: AUDIT\nrules:\n- {}")),
            new Case(NoAllow + "; audited by AUDIT policy billing/audit-all rule 0"));
    }

    [Fact]
    public void Ports_methods_and_hosts()
    {
        var engine = Engine(Policy("ops", """
            rules:
            - to:
              - operation:
                  ports: ["8080"]
                  methods: ["GET", "HEAD"]
                  hosts: ["billing", "billing.billing.svc.cluster.local"]
            """));
        const string allowed = "allowed by ALLOW policy billing/ops rule 0";
        const string denied = "denied: no ALLOW policy matched (1 apply)";
        Check(engine,
            new Case(allowed, Method: "GET"),
            new Case(allowed, Method: "HEAD", Host: "Billing:8080"),
            new Case(denied, Method: "GET", Port: 9090),
            new Case(denied, Method: "get"),
            new Case(denied, Method: "GET", Host: "billing.evil.com"));
    }

    [Fact]
    public void When_conditions_all_must_hold()
    {
        var engine = Engine(Policy("when", """
            rules:
            - when:
              - key: request.headers[X-Tenant]
                values: ["acme", "globex-*"]
              - key: source.namespace
                values: ["store"]
              - key: destination.port
                notValues: ["9090"]
              - key: source.ip
                values: ["10.0.0.0/8"]
              - key: source.principal
                values: ["spiffe://cluster.local/ns/store/sa/*"]
            - when:
              - key: connection.sni
                values: ["*.internal"]
            """));
        const string allowed = "allowed by ALLOW policy billing/when rule 0";
        const string denied = "denied: no ALLOW policy matched (1 apply)";
        Check(engine,
            new Case(allowed, Headers: [("x-tenant", ["acme"])]),
            new Case(allowed, Headers: [("X-TENANT", ["globex-eu"])]),
            new Case(denied, Headers: [("x-tenant", ["initech"])]),
            new Case(denied),
            new Case(denied, Headers: [("x-tenant", ["acme"])], Principal: Ops),
            new Case(denied, Headers: [("x-tenant", ["acme"])], Port: 9090),
            new Case(denied, Headers: [("x-tenant", ["acme"])], Ip: "192.168.0.1"),
            new Case("allowed by ALLOW policy billing/when rule 1", Principal: null, Sni: "billing.INTERNAL"));
    }

    [Fact]
    public void Build_keeps_only_applying_policies_in_a_stable_order()
    {
        var engine = Engine(
            Policy("b", "rules:\n- {}") + Policy("a", "action: DENY") + Policy("z", "rules:\n- {}", ns: "meshproxy-system") + Policy("x", "rules:\n- {}", ns: "other"));
        Assert.Equal(["billing/a", "billing/b", "meshproxy-system/z"], engine.Policies.Select(p => p.Key));
    }
}
