using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Tests;

public sealed class PolicyParserTests
{
    private const string Head = "apiVersion: meshproxy.io/v1alpha1\n";

    [Fact]
    public void DestinationPolicy_every_field()
    {
        var result = ResourceParser.ParseText(Head + """
            kind: DestinationPolicy
            metadata: { name: reviews, namespace: shop }
            spec:
              host: reviews.shop.svc.cluster.local
              loadBalancer: { simple: PEAK_EWMA }
              connectionPool:
                tcp: { maxConnections: 100, connectTimeout: 250ms, idleTimeout: 30m }
                http: { http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRequestsPerConnection: 5, maxRetries: 3, idleTimeout: 30s }
              outlierDetection:
                consecutive5xxErrors: 7
                consecutiveGatewayErrors: 3
                consecutiveLocalOriginFailures: 2
                splitExternalLocalOriginErrors: true
                interval: 5s
                baseEjectionTime: 1m
                maxEjectionPercent: 50
              retryBudget: { percent: 25.5, minRetriesPerSecond: 4 }
            """, "dp.yaml");

        Assert.Empty(result.Errors);
        // maxRequestsPerConnection applies to HTTP/1.1 and HTTP/2 connections alike: no warning any more.
        Assert.Empty(result.Warnings);
        var spec = Assert.IsType<DestinationPolicyResource>(Assert.Single(result.Resources)).Spec;
        Assert.Equal("reviews.shop.svc.cluster.local", spec.Host);
        Assert.Equal(LoadBalancerKind.PeakEwma, spec.LoadBalancer);
        Assert.Equal(new ConnectionPoolSpec(100, TimeSpan.FromMilliseconds(250), 10, 1000, 5, 3, TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(30)), spec.ConnectionPool);
        Assert.Equal(new OutlierDetectionSpec(7, 3, 2, TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(1), 50, SplitExternalLocalOriginErrors: true), spec.OutlierDetection);
        Assert.Equal(new RetryBudgetSpec(25.5, null, 4), spec.RetryBudget);
    }

    [Fact]
    public void DestinationPolicy_outlier_detection_enabled_false_turns_it_off_and_refuses_thresholds_beside_it()
    {
        var off = ResourceParser.ParseText(Head + """
            kind: DestinationPolicy
            metadata: { name: reviews }
            spec: { host: reviews, outlierDetection: { enabled: false } }
            """, "dp.yaml");
        Assert.Empty(off.Errors);
        Assert.Empty(off.Warnings);
        var spec = Assert.IsType<DestinationPolicyResource>(Assert.Single(off.Resources)).Spec;
        Assert.Same(OutlierDetectionSpec.Disabled, spec.OutlierDetection);

        var both = ResourceParser.ParseText(Head + """
            kind: DestinationPolicy
            metadata: { name: reviews }
            spec: { host: reviews, outlierDetection: { enabled: false, consecutive5xxErrors: 3 } }
            """, "dp.yaml");
        var error = Assert.Single(both.Errors);
        Assert.Equal("spec.outlierDetection.enabled", error.FieldPath);
    }

    [Theory]
    [InlineData("{ tcp: { idleTimeout: 0s } }", null, null)]                   // Istio's 0s: never
    [InlineData("{ tcp: { maxConnections: 5 } }", 60.0, null)]                   // unset: 1 h, Istio's default
    [InlineData("{ tcp: { idleTimeout: 90s } }", 1.5, null)]
    [InlineData("{ tcp: { idleTimeout: soon } }", null, "'soon' is not a duration (write it like 250ms, 5s, 1m30s)")]
    [InlineData("{ tcp: { idleTimeout: 800h } }", null, "must be between 0s and 2592000s")]
    public void DestinationPolicy_tcp_idle_timeout_is_istios_field_with_its_default_and_0s_for_never(string pool, double? minutes, string? error)
    {
        var result = ResourceParser.ParseText(Head + $$"""
            kind: DestinationPolicy
            metadata: { name: db }
            spec: { host: db, connectionPool: {{pool}} }
            """, "dp.yaml");
        if (error is not null)
        {
            var problem = Assert.Single(result.Errors);
            Assert.Equal(("dp.yaml", "spec.connectionPool.tcp.idleTimeout", error), (problem.File, problem.FieldPath, problem.Reason));
            return;
        }

        Assert.Empty(result.Errors);
        var spec = Assert.IsType<DestinationPolicyResource>(Assert.Single(result.Resources)).Spec;
        Assert.Equal(minutes is { } m ? TimeSpan.FromMinutes(m) : Timeout.InfiniteTimeSpan, spec.ConnectionPool.TcpIdleTimeout);
    }

    [Fact]
    public void DestinationPolicy_defaults()
    {
        var result = ResourceParser.ParseText(Head + """
            kind: DestinationPolicy
            metadata: { name: reviews }
            spec: { host: reviews, outlierDetection: {} }
            """, "dp.yaml");

        var spec = Assert.IsType<DestinationPolicyResource>(Assert.Single(result.Resources)).Spec;
        Assert.Equal(LoadBalancerKind.LeastRequest, spec.LoadBalancer);
        Assert.Equal(ConnectionPoolSpec.Default, spec.ConnectionPool);
        Assert.Equal(new OutlierDetectionSpec(5, null, null, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), 10), spec.OutlierDetection);
        Assert.Equal(new RetryBudgetSpec(20, null, 10), spec.RetryBudget);
    }

    [Fact]
    public void Consecutive_local_origin_failures_without_the_split_is_accepted_with_a_warning_saying_why_it_does_nothing()
    {
        var result = ResourceParser.ParseText(Head + """
            kind: DestinationPolicy
            metadata: { name: reviews }
            spec:
              host: reviews
              outlierDetection:
                consecutiveGatewayErrors: 3
                consecutiveLocalOriginFailures: 2
            """, "dp.yaml");

        Assert.Empty(result.Errors);
        var warning = Assert.Single(result.Warnings);
        Assert.Equal(("dp.yaml", 8, "spec.outlierDetection.consecutiveLocalOriginFailures"), (warning.File, warning.Line, warning.FieldPath));
        Assert.StartsWith("has effect only with splitExternalLocalOriginErrors: true", warning.Reason);
        Assert.DoesNotContain("ejects nothing", warning.Reason);
        var spec = Assert.IsType<DestinationPolicyResource>(Assert.Single(result.Resources)).Spec;
        Assert.Equal(new OutlierDetectionSpec(5, 3, 2, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), 10), spec.OutlierDetection);

        // With no 5xx or gateway threshold either, the warning says the policy ejects nothing.
        var alone = ResourceParser.ParseText(Head + """
            kind: DestinationPolicy
            metadata: { name: reviews }
            spec: { host: reviews, outlierDetection: { consecutive5xxErrors: 0, consecutiveLocalOriginFailures: 2, splitExternalLocalOriginErrors: false } }
            """, "dp.yaml");
        Assert.Empty(alone.Errors);
        Assert.EndsWith("and this outlierDetection ejects nothing", Assert.Single(alone.Warnings).Reason);
    }

    [Fact]
    public void Split_external_local_origin_errors_alone_ejects_on_local_origin_failures_and_must_be_a_boolean()
    {
        // 5xx off, no local-origin threshold: the split's default threshold (5, Envoy's) applies, so it is not "ejects nothing".
        var result = ResourceParser.ParseText(Head + """
            kind: DestinationPolicy
            metadata: { name: reviews }
            spec: { host: reviews, outlierDetection: { consecutive5xxErrors: 0, splitExternalLocalOriginErrors: true } }
            """, "dp.yaml");
        Assert.Empty(result.Errors);
        Assert.Empty(result.Warnings);
        var spec = Assert.IsType<DestinationPolicyResource>(Assert.Single(result.Resources)).Spec;
        Assert.Equal(new OutlierDetectionSpec(null, null, null, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), 10, SplitExternalLocalOriginErrors: true), spec.OutlierDetection);

        var bad = ResourceParser.ParseText(Head + """
            kind: DestinationPolicy
            metadata: { name: reviews }
            spec: { host: reviews, outlierDetection: { splitExternalLocalOriginErrors: sometimes } }
            """, "dp.yaml");
        var error = Assert.Single(bad.Errors);
        Assert.Equal("spec.outlierDetection.splitExternalLocalOriginErrors", error.FieldPath);
        Assert.Contains("true or false", error.Reason);
    }

    [Fact]
    public void DestinationPolicy_errors_name_line_and_field()
    {
        var result = ResourceParser.ParseText(Head + """
            kind: DestinationPolicy
            metadata: { name: reviews }
            spec:
              host: "*.shop"
              loadBalancer: { simple: FASTEST }
              connectionPool:
                tcp: { maxConnections: 0, connectTimeout: 5 }
              outlierDetection: { consecutive5xxErrors: 0, maxEjectionPercent: 101 }
              retryBudget: { percent: 20, minRetryConcurrency: 1, minRetriesPerSecond: 1 }
            """, "dp.yaml");

        Assert.Empty(result.Resources);
        var errors = result.Errors.Select(e => $"{e.Line} {e.FieldPath}").ToList();
        Assert.Contains("5 spec.host", errors);
        Assert.Contains("6 spec.loadBalancer.simple", errors);
        Assert.Contains("8 spec.connectionPool.tcp.maxConnections", errors);
        Assert.Contains("8 spec.connectionPool.tcp.connectTimeout", errors);
        Assert.Contains("9 spec.outlierDetection.maxEjectionPercent", errors);
        Assert.Contains("9 spec.outlierDetection", errors); // ejects nothing
        Assert.Contains("10 spec.retryBudget.minRetriesPerSecond", errors);
        Assert.All(result.Errors, e => Assert.Equal("dp.yaml", e.File));
    }

    [Fact]
    public void EgressPolicy_parses_hosts_ports_and_selector()
    {
        var result = ResourceParser.ParseText(Head + """
            kind: EgressPolicy
            metadata: { name: payments-out, namespace: shop }
            spec:
              selector: { matchLabels: { app: payments } }
              hosts: [api.stripe.com, "*.googleapis.com"]
              ports:
                - { number: 443, protocol: TLS }
                - { number: 80, protocol: HTTP, name: plain }
            """, "eg.yaml");

        Assert.Empty(result.Errors);
        var spec = Assert.IsType<EgressPolicyResource>(Assert.Single(result.Resources)).Spec;
        Assert.Equal(["api.stripe.com", "*.googleapis.com"], spec.Hosts);
        Assert.Equal([new EgressPort(443, EgressProtocol.Tls), new EgressPort(80, EgressProtocol.Http)], spec.Ports);
        Assert.True(spec.Selects(new Dictionary<string, string> { ["app"] = "payments", ["v"] = "1" }));
        Assert.False(spec.Selects(new Dictionary<string, string> { ["app"] = "cart" }));
        Assert.True(spec.AllowsHost("API.stripe.com"));
        Assert.True(spec.AllowsHost("storage.googleapis.com"));
        Assert.True(spec.AllowsHost("a.b.googleapis.com"));
        Assert.False(spec.AllowsHost("googleapis.com"));
        Assert.False(spec.AllowsHost("evil-googleapis.com"));
    }

    [Fact]
    public void EgressPolicy_errors()
    {
        var result = ResourceParser.ParseText(Head + """
            kind: EgressPolicy
            metadata: { name: bad }
            spec:
              hosts: ["*", "bad host"]
              ports:
                - { number: 443, protocol: QUIC }
                - { number: 443, protocol: TLS }
            """, "eg.yaml");

        var errors = result.Errors.Select(e => $"{e.Line} {e.FieldPath}").ToList();
        Assert.Contains("5 spec.hosts[0]", errors);
        Assert.Contains("5 spec.hosts[1]", errors);
        Assert.Contains("7 spec.ports[0].protocol", errors);
        Assert.Contains("6 spec.ports", errors); // a whole-list error points at the list's name
    }

    [Fact]
    public void Sidecar_egress_hosts()
    {
        var result = ResourceParser.ParseText(Head + """
            kind: Sidecar
            metadata: { name: web, namespace: shop }
            spec:
              app: { port: 8080 }
              controlPlane: { address: "http://127.0.0.1:15010", snapshotPath: /var/run/web.snapshot }
              egress:
                - hosts: ["./*", "infra/redis.infra", "*/*.example.com", "nope"]
            """, "sc.yaml");

        Assert.Equal("8 spec.egress[0].hosts[3]", $"{Assert.Single(result.Errors).Line} {result.Errors[0].FieldPath}");
        var ok = ResourceParser.ParseText(Head + """
            kind: Sidecar
            metadata: { name: web, namespace: shop }
            spec:
              app: { port: 8080 }
              controlPlane: { address: "http://127.0.0.1:15010", snapshotPath: /var/run/web.snapshot }
              egress:
                - hosts: ["./*", "infra/redis.infra", "*/*.example.com"]
            """, "sc.yaml");
        var spec = Assert.IsType<SidecarResource>(Assert.Single(ok.Resources)).Spec;
        Assert.Equal("/var/run/web.snapshot", spec.ControlPlane!.SnapshotPath);
        var egress = spec.Egress!;
        Assert.True(egress[0].Matches("shop", "shop", "cart"));
        Assert.False(egress[0].Matches("shop", "infra", "cart"));
        Assert.True(egress[1].Matches("shop", "infra", "redis.infra"));
        Assert.True(egress[2].Matches("shop", "any", "api.example.com"));
    }

    [Fact]
    public void Bad_input_is_reported_not_thrown()
    {
        var notYaml = ResourceParser.ParseText("kind: [unclosed\n  : :", "x.yaml");
        Assert.Contains("not valid YAML", Assert.Single(notYaml.Errors).Reason);

        var unknownKind = ResourceParser.ParseText(Head + "kind: Gateway\nmetadata: { name: g }\nspec: {}\n", "k.yaml");
        Assert.Contains("unknown kind 'Gateway'", Assert.Single(unknownKind.Errors).Reason);

        var unknownField = ResourceParser.ParseText(Head + "kind: EgressPolicy\nmetadata: { name: e }\nspec: { hosts: [a.com], ports: [{ number: 80, protocol: HTTP }], future: 1 }\n", "f.yaml");
        Assert.Single(unknownField.Resources);
        Assert.Equal("spec.future", Assert.Single(unknownField.Warnings).FieldPath);

        var duplicate = ResourceParser.ParseText(Head + "kind: EgressPolicy\nmetadata: { name: e }\nspec: { hosts: [a.com], ports: [{ number: 80, protocol: HTTP }] }\n---\n" +
            Head + "kind: EgressPolicy\nmetadata: { name: e }\nspec: { hosts: [b.com], ports: [{ number: 80, protocol: HTTP }] }\n", "d.yaml");
        Assert.Single(duplicate.Resources);
        var dup = Assert.Single(duplicate.Errors);
        Assert.Equal(6, dup.Line);
        Assert.Contains("duplicate EgressPolicy 'default/e'", dup.Reason);
    }
}
