using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Kubernetes.CustomResources;
using MeshProxy.ControlPlane.Kubernetes.GatewayApi;
using MeshProxy.ControlPlane.Tests.Kubernetes.CustomResources;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.GatewayApi;

public sealed class GammaTranslatorTests
{
    private static readonly IReadOnlyList<ServiceResource> Services = [.. ResourceParser.ParseText("""
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: reviews, namespace: shop }
        spec: { ports: [{ port: 80 }] }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: reviews-v1, namespace: shop }
        spec: { ports: [{ port: 80 }] }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: reviews-v2, namespace: shop }
        spec: { ports: [{ port: 9080, protocol: GRPC }] }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: multi, namespace: shop }
        spec: { ports: [{ port: 80 }, { port: 81 }] }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: other, namespace: elsewhere }
        spec: { ports: [{ port: 80 }] }
        """, "services.yaml").ThrowIfInvalid().OfKind<ServiceResource>()];

    private const string ToReviews = "\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"reviews\",\"port\":80}]";

    private static CustomObject Route(string rules, string parents = ToReviews, string name = "r", string kind = "HTTPRoute", string created = "2026-12-01T00:00:00Z", int generation = 4) =>
        CustomResourceReaderTests.Object($$"""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"{{kind}}",
             "metadata":{"name":"{{name}}","namespace":"shop","generation":{{generation}},"creationTimestamp":"{{created}}"},
             "spec":{ {{parents}},"rules":{{rules}} } }
            """);

    private static (HttpRouteResource? Route, RouteStatus Status) TranslateOne(CustomObject route)
    {
        var result = GammaTranslator.Translate([route], Services);
        var served = result.Resources.Select(r => Assert.IsType<HttpRouteResource>(r.Resource)).SingleOrDefault();
        return (served, Assert.Single(result.Statuses));
    }

    private static void AssertCondition(RouteStatus status, string type, bool value, string reason)
    {
        var condition = Assert.Single(Assert.Single(status.Parents).Conditions, c => c.Type == type);
        Assert.True(condition.Status == value && condition.Reason == reason, $"{type}: expected {value}/{reason}, got {condition.Status}/{condition.Reason}: {condition.Message}");
    }

    [Fact]
    public void Weighted_backends_become_percentages_of_one_HttpRoute_for_the_parent_Service_and_the_parent_is_accepted()
    {
        var (route, status) = TranslateOne(Route("""
            [{"backendRefs":[{"name":"reviews-v1","port":80,"weight":3},{"name":"reviews-v2","port":9080,"weight":1}]}]
            """));

        Assert.NotNull(route);
        Assert.Equal("HttpRoute/shop/reviews.gateway-api", route.Key);
        Assert.Equal(["reviews.shop"], route.Spec.Hosts);
        var rule = Assert.Single(route.Spec.Http);
        Assert.Equal([("reviews-v1.shop", 80, 75), ("reviews-v2.shop", 9080, 25)], rule.Route.Select(d => (d.Host, d.Port ?? 0, d.Weight)));
        Assert.Empty(rule.Match); // no match: every request
        Assert.Equal(4, status.Generation);
        AssertCondition(status, "Accepted", true, "Accepted");
        AssertCondition(status, "ResolvedRefs", true, "ResolvedRefs");
    }

    [Theory]
    [InlineData("1,1,1", "34,33,33")]
    [InlineData("1,0", "100,0")]
    [InlineData("999999,1", "100,0")]
    public void Weights_are_shared_out_to_exactly_100(string weights, string expected)
    {
        var refs = string.Join(",", weights.Split(',').Select((w, i) => $$"""{"name":"{{(i % 2 == 0 ? "reviews-v1" : "reviews")}}","port":80,"weight":{{w}}}"""));
        var (route, _) = TranslateOne(Route($$"""[{"backendRefs":[{{refs}}]}]"""));

        Assert.Equal(expected, string.Join(",", route!.Spec.Http[0].Route.Select(d => d.Weight)));
    }

    public static TheoryData<string, string, string[], string[]> Matches() => new()
    {
        // kind, match JSON, paths that must match, paths that must not
        { "HTTPRoute", """{"path":{"type":"Exact","value":"/login"}}""", ["/login"], ["/login/", "/logins"] },
        { "HTTPRoute", """{"path":{"type":"PathPrefix","value":"/api"}}""", ["/api", "/api/", "/api/v1"], ["/apix", "/ap"] },
        { "HTTPRoute", """{"path":{"type":"PathPrefix","value":"/api/"}}""", ["/api", "/api/v1"], ["/apix"] },
        { "HTTPRoute", """{"path":{"type":"PathPrefix","value":"/a.b"}}""", ["/a.b/c"], ["/axb/c"] },
        { "HTTPRoute", """{"path":{"type":"RegularExpression","value":"/v[0-9]+/.*"}}""", ["/v2/x"], ["/vx/x"] },
        { "HTTPRoute", """{"path":{"type":"PathPrefix","value":"/"}}""", ["/", "/anything"], [] },
        { "GRPCRoute", """{"method":{"service":"shop.Reviews","method":"Get"}}""", ["/shop.Reviews/Get"], ["/shop.Reviews/List", "/shop.Other/Get"] },
        { "GRPCRoute", """{"method":{"service":"shop.Reviews"}}""", ["/shop.Reviews/Get", "/shop.Reviews/List"], ["/shop.Other/Get"] },
        { "GRPCRoute", """{"method":{"method":"Get"}}""", ["/shop.Reviews/Get", "/a.B/Get"], ["/shop.Reviews/List"] },
        { "GRPCRoute", """{"method":{"type":"RegularExpression","service":"shop\\..*","method":"G.t"}}""", ["/shop.Reviews/Get"], ["/other.Reviews/Get", "/shop.Reviews/List"] },
    };

    [Theory]
    [MemberData(nameof(Matches))]
    public void Path_and_grpc_method_matches_mean_what_the_Gateway_API_says(string kind, string match, string[] matching, string[] notMatching)
    {
        var (route, status) = TranslateOne(Route($$"""[{"matches":[{{match}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", kind: kind));

        AssertCondition(status, "Accepted", true, "Accepted");
        var uri = route!.Spec.Http[0].Match is [var only] ? only.Uri : null;
        foreach (var path in matching)
        {
            Assert.True(uri is null || uri.IsMatch(path), $"{match} must match {path}");
        }

        foreach (var path in notMatching)
        {
            Assert.False(uri is null || uri.IsMatch(path), $"{match} must not match {path}");
        }
    }

    [Fact]
    public void Method_and_header_matches_carry_over_with_header_names_lowercased()
    {
        var (route, _) = TranslateOne(Route("""
            [{"matches":[{"method":"POST","headers":[{"name":"X-Canary","value":"yes"},{"type":"RegularExpression","name":"User","value":"a.*"},{"name":"x-canary","value":"ignored"}]}],
              "backendRefs":[{"name":"reviews-v1","port":80}]}]
            """));

        var match = Assert.Single(route!.Spec.Http[0].Match);
        Assert.Equal(new StringMatch(StringMatchKind.Exact, "POST"), match.Method);
        Assert.Equal([("x-canary", StringMatchKind.Exact, "yes"), ("user", StringMatchKind.Regex, "a.*")], match.Headers.Select(h => (h.Name, h.Value.Kind, h.Value.Value)));
    }

    [Fact]
    public void Matches_of_every_route_on_a_Service_are_ordered_by_the_Gateway_API_precedence()
    {
        var older = Route("""
            [{"matches":[{"path":{"type":"PathPrefix","value":"/"}}],"backendRefs":[{"name":"reviews-v1","port":80}]},
             {"matches":[{"path":{"type":"PathPrefix","value":"/api"}},{"path":{"type":"PathPrefix","value":"/api/v2"}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]
            """, name: "a-older", created: "2026-01-01T00:00:00Z");
        var newer = Route("""
            [{"matches":[{"path":{"type":"Exact","value":"/login"}},{"path":{"type":"PathPrefix","value":"/api"},"headers":[{"name":"x-v","value":"2"}]}],
              "backendRefs":[{"name":"reviews-v2","port":9080}]}]
            """, name: "b-newer", created: "2026-06-01T00:00:00Z");

        var result = GammaTranslator.Translate([newer, older], Services);

        var route = Assert.IsType<HttpRouteResource>(Assert.Single(result.Resources).Resource);
        Assert.Equal(["b-newer.0.0", "a-older.1.1", "b-newer.0.1", "a-older.1.0", "a-older.0.0"], route.Spec.Http.Select(r => r.Name));
    }

    [Fact]
    public void Timeouts_become_the_rule_timeout_and_a_per_try_timeout_without_retries()
    {
        var (route, _) = TranslateOne(Route("""
            [{"timeouts":{"request":"10s","backendRequest":"2s"},"backendRefs":[{"name":"reviews-v1","port":80}]},
             {"timeouts":{"request":"0s"},"backendRefs":[{"name":"reviews-v1","port":80}]}]
            """));

        Assert.Equal(TimeSpan.FromSeconds(10), route!.Spec.Http[0].Timeout);
        Assert.Equal(new RetryPolicySpec(0, TimeSpan.FromSeconds(2), route.Spec.Http[0].Retries!.RetryOn), route.Spec.Http[0].Retries);
        Assert.Null(route.Spec.Http[1].Timeout); // 0s: no timeout
    }

    [Theory]
    [InlineData("""[{"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"reviews-v2","port":9080},"percent":5,"fraction":{"numerator":1}}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "spec.rules[0].filters[0].requestMirror: set percent or fraction, not both")]
    [InlineData("""[{"filters":[{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"reviews-v2","port":9080}}},{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"reviews-v1","port":80}}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "RequestMirror appears more than once")]
    [InlineData("""[{"filters":[{"type":"RequestMirror"}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "type RequestMirror without its requestMirror field")]
    [InlineData("""[{"filters":[{"type":"RequestRedirect","requestRedirect":{"scheme":"https"}},{"type":"RequestMirror","requestMirror":{"backendRef":{"name":"reviews-v2","port":9080}}}]}]""", "a rule with a redirect forwards nothing to mirror")]
    [InlineData("""[{"filters":[{"type":"ExtensionRef","extensionRef":{"group":"x.io","kind":"Lua","name":"f"}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "spec.rules[0].filters[0]: ExtensionRef is not supported")]
    [InlineData("""[{"filters":[{"type":"URLRewrite","urlRewrite":{"hostname":"a"}},{"type":"RequestRedirect","requestRedirect":{"scheme":"https"}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "URLRewrite and RequestRedirect cannot be used in one rule")]
    [InlineData("""[{"matches":[{"path":{"type":"Exact","value":"/a"}}],"filters":[{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/b"}}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "spec.rules[0].matches[0].path: ReplacePrefixMatch needs a PathPrefix match")]
    [InlineData("""[{"filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":{"set":[{"name":"a","value":"1"}]}},{"type":"RequestHeaderModifier","requestHeaderModifier":{"set":[{"name":"b","value":"2"}]}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "RequestHeaderModifier appears more than once")]
    [InlineData("""[{"filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":{"set":[{"name":"Host","value":"x"}]}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "'host' is a connection or framing header")]
    [InlineData("""[{"filters":[{"type":"RequestRedirect","requestRedirect":{"statusCode":418}}]}]""", "redirectCode")]
    [InlineData("""[{"matches":[{"queryParams":[{"type":"Prefix","name":"v","value":"2"}]}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "spec.rules[0].matches[0].queryParams[0].type: 'Prefix'")]
    [InlineData("""[{"timeouts":{"request":"1s","backendRequest":"2s"},"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "timeouts.backendRequest")]
    [InlineData("""[{"sessionPersistence":{"type":"Cookie"},"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "spec.rules[0].sessionPersistence: not supported")]
    [InlineData("""[{"matches":[{"path":{"type":"RegularExpression","value":"/(["}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "not a valid regular expression")]
    [InlineData("""[{"timeouts":{"request":"soon"},"backendRefs":[{"name":"reviews-v1","port":80}]}]""", "spec.rules[0].timeouts.request")]
    public void What_the_route_model_cannot_honour_makes_the_route_not_accepted_and_unserved_never_silently_ignored(string rules, string message)
    {
        var (route, status) = TranslateOne(Route(rules));

        Assert.Null(route);
        AssertCondition(status, "Accepted", false, "UnsupportedValue");
        Assert.Contains(message, status.Parents[0].Conditions[0].Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, string, string, string, string> MirrorCases() => new()
    {
        // requestMirror JSON, our rule's mirror ("host:port percent", or "none"), Accepted reason, ResolvedRefs reason, a part of ResolvedRefs' message
        { """{"backendRef":{"name":"reviews-v2","port":9080}}""", "reviews-v2.shop:9080 100", "Accepted", "ResolvedRefs", "every backendRef resolved" },
        { """{"backendRef":{"group":"","kind":"Service","name":"reviews-v2","port":9080},"percent":25}""", "reviews-v2.shop:9080 25", "Accepted", "ResolvedRefs", "" },
        { """{"backendRef":{"name":"reviews-v2","port":9080},"percent":0}""", "reviews-v2.shop:9080 0", "Accepted", "ResolvedRefs", "" },
        { """{"backendRef":{"name":"reviews-v2","port":9080},"fraction":{"numerator":1,"denominator":8}}""", "reviews-v2.shop:9080 12.5", "Accepted", "ResolvedRefs", "" },
        { """{"backendRef":{"name":"reviews-v2","port":9080},"fraction":{"numerator":3}}""", "reviews-v2.shop:9080 3", "Accepted", "ResolvedRefs", "" },
        { """{"backendRef":{"name":"multi","port":81}}""", "multi.shop:81 100", "Accepted", "ResolvedRefs", "" },
        // A mirror backend that does not resolve is dropped as the Gateway API says: the rule is served without it.
        { """{"backendRef":{"name":"nowhere","port":80}}""", "none", "Accepted", "BackendNotFound", "spec.rules[0].filters[0].requestMirror.backendRef: no Service shop/nowhere" },
        { """{"backendRef":{"name":"reviews-v2","port":80}}""", "none", "Accepted", "BackendNotFound", "Service shop/reviews-v2 has no port 80" },
        { """{"backendRef":{"name":"reviews-v2"}}""", "none", "Accepted", "BackendNotFound", "(port is required)" },
        { """{"backendRef":{"name":"other","namespace":"elsewhere","port":80}}""", "none", "Accepted", "RefNotPermitted", "ReferenceGrant is not supported" },
        { """{"backendRef":{"group":"x.io","kind":"Bucket","name":"b"}}""", "none", "Accepted", "InvalidKind", "only Services" },
        { """{"percent":10}""", "none", "Accepted", "BackendNotFound", "requestMirror.backendRef: none" },
        // Bad shares make the route not Accepted (never a silently different share).
        { """{"backendRef":{"name":"reviews-v2","port":9080},"percent":101}""", "unserved", "UnsupportedValue", "ResolvedRefs", "" },
        { """{"backendRef":{"name":"reviews-v2","port":9080},"fraction":{"numerator":5,"denominator":4}}""", "unserved", "UnsupportedValue", "ResolvedRefs", "" },
        { """{"backendRef":{"name":"reviews-v2","port":9080},"fraction":{"numerator":1,"denominator":0}}""", "unserved", "UnsupportedValue", "ResolvedRefs", "" },
    };

    [Theory]
    [MemberData(nameof(MirrorCases))]
    public void RequestMirror_becomes_the_rules_mirror_with_its_share_and_its_backend_resolved_like_a_backendRef(
        string mirror, string expected, string accepted, string resolvedRefs, string message)
    {
        foreach (var kind in (string[])["HTTPRoute", "GRPCRoute"])
        {
            var (route, status) = TranslateOne(Route($$$"""
                [{"filters":[{"type":"RequestMirror","requestMirror":{{{mirror}}}}],"backendRefs":[{"name":"reviews-v1","port":80}]}]
                """, kind: kind));

            AssertCondition(status, "Accepted", accepted == "Accepted", accepted);
            AssertCondition(status, "ResolvedRefs", resolvedRefs == "ResolvedRefs", resolvedRefs);
            Assert.Contains(message, status.Parents[0].Conditions.Single(c => c.Type == "ResolvedRefs").Message, StringComparison.Ordinal);
            if (expected == "unserved")
            {
                Assert.Null(route);
                continue;
            }

            var rule = Assert.Single(route!.Spec.Http);
            Assert.Equal(["reviews-v1.shop"], rule.Route.Select(d => d.Host)); // the primary is untouched
            Assert.Equal(expected, rule.Mirror is { } m ? $"{m.Host}:{m.Port} {m.Percentage.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : "none");
        }
    }

    [Fact]
    public void A_GRPCRoute_takes_header_modifiers_and_refuses_the_HTTP_only_filters()
    {
        var (route, status) = TranslateOne(Route("""
            [{"filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":{"add":[{"name":"X-Tenant","value":"a"}]}},
                         {"type":"ResponseHeaderModifier","responseHeaderModifier":{"remove":["x-internal"]}}],
              "backendRefs":[{"name":"reviews-v2","port":9080}]}]
            """, kind: "GRPCRoute"));

        AssertCondition(status, "Accepted", true, "Accepted");
        var rule = Assert.Single(route!.Spec.Http);
        Assert.Equal([new("x-tenant", "a")], rule.Headers!.Request!.Add);
        Assert.Equal(["x-internal"], rule.Headers.Response!.Remove);

        var (refused, refusal) = TranslateOne(Route("""
            [{"filters":[{"type":"URLRewrite","urlRewrite":{"hostname":"x"}}],"backendRefs":[{"name":"reviews-v2","port":9080}]}]
            """, kind: "GRPCRoute"));
        Assert.Null(refused);
        AssertCondition(refusal, "Accepted", false, "UnsupportedValue");
        Assert.Contains("URLRewrite is not supported by the mesh's sidecars for a GRPCRoute", refusal.Parents[0].Conditions[0].Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, string> FilterCases() => new()
    {
        // Gateway API filter JSON (on a PathPrefix /api match), what our rule holds afterwards
        { """{"type":"RequestHeaderModifier","requestHeaderModifier":{"set":[{"name":"X-Env","value":"prod"}],"add":[{"name":"X-Tag","value":"a"}],"remove":["X-Debug"]}}""",
          "request set x-env=prod add x-tag=a remove x-debug" },
        { """{"type":"ResponseHeaderModifier","responseHeaderModifier":{"set":[{"name":"Cache-Control","value":"no-store"}]}}""",
          "response set cache-control=no-store" },
        { """{"type":"URLRewrite","urlRewrite":{"hostname":"reviews.internal","path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/v2"}}}""",
          "rewrite ReplacePrefixMatch:/v2 authority=reviews.internal" },
        { """{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplaceFullPath","replaceFullPath":"/index"}}}""",
          "rewrite ReplaceFullPath:/index" },
        { """{"type":"RequestRedirect","requestRedirect":{"scheme":"https","hostname":"shop.example","statusCode":301}}""",
          "redirect 301 https://shop.example: path=" },
        { """{"type":"RequestRedirect","requestRedirect":{"port":8080,"path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/new"}}}""",
          "redirect 302 (request)://(request):8080 path=ReplacePrefixMatch:/new" },
    };

    [Theory]
    [MemberData(nameof(FilterCases))]
    public void HTTPRoute_filters_become_the_rules_header_changes_rewrite_or_redirect(string filter, string expected)
    {
        var redirect = filter.Contains("RequestRedirect", StringComparison.Ordinal);
        var backends = redirect ? string.Empty : ",\"backendRefs\":[{\"name\":\"reviews-v1\",\"port\":80}]";
        var (route, status) = TranslateOne(Route($$$"""
            [{"matches":[{"path":{"type":"PathPrefix","value":"/api"}}],"filters":[{{{filter}}}]{{{backends}}}}]
            """));

        AssertCondition(status, "Accepted", true, "Accepted");
        AssertCondition(status, "ResolvedRefs", true, "ResolvedRefs");
        var rule = Assert.Single(route!.Spec.Http);
        Assert.Equal(new StringMatch(StringMatchKind.PathPrefix, "/api"), rule.Match[0].Uri);
        Assert.Equal(redirect, rule.Route.Count == 0);
        Assert.Equal(expected, Describe(rule));

        static string Describe(HttpRouteRule rule)
        {
            if (rule.Redirect is { } r)
            {
                return $"redirect {r.StatusCode} {r.Scheme ?? "(request)"}://{r.Authority ?? "(request)"}:{r.Port?.ToString(System.Globalization.CultureInfo.InvariantCulture)} path={(r.Path is { } p ? $"{p.Kind}:{p.Value}" : "")}";
            }

            if (rule.Rewrite is { } w)
            {
                return $"rewrite {(w.Path is { } p ? $"{p.Kind}:{p.Value}" : "")}{(w.Authority is { } a ? $" authority={a}" : "")}";
            }

            var (direction, m) = rule.Headers!.Request is { } req ? ("request", req) : ("response", rule.Headers.Response!);
            return string.Join(' ', new[]
            {
                direction,
                m.Set.Count > 0 ? "set " + string.Join(',', m.Set.Select(h => $"{h.Key}={h.Value}")) : null,
                m.Add.Count > 0 ? "add " + string.Join(',', m.Add.Select(h => $"{h.Key}={h.Value}")) : null,
                m.Remove.Count > 0 ? "remove " + string.Join(',', m.Remove) : null,
            }.OfType<string>());
        }
    }

    [Fact]
    public void Query_parameter_matches_carry_over_case_sensitive_first_entry_wins_and_count_in_the_precedence()
    {
        var (route, status) = TranslateOne(Route("""
            [{"matches":[{"path":{"type":"PathPrefix","value":"/api"}}],"backendRefs":[{"name":"reviews-v1","port":80}]},
             {"matches":[{"path":{"type":"PathPrefix","value":"/api"},"queryParams":[{"name":"Version","value":"2"},{"type":"RegularExpression","name":"tenant","value":"a.*"},{"name":"Version","value":"ignored"}]}],
              "backendRefs":[{"name":"reviews-v1","port":80}]}]
            """));

        AssertCondition(status, "Accepted", true, "Accepted");
        Assert.Equal(["r.1.0", "r.0.0"], route!.Spec.Http.Select(r => r.Name)); // same path: more query matches first
        Assert.Equal([("Version", StringMatchKind.Exact, "2"), ("tenant", StringMatchKind.Regex, "a.*")],
            route.Spec.Http[0].Match[0].QueryParams.Select(q => (q.Name, q.Value.Kind, q.Value.Value)));
    }

    [Fact]
    public void A_redirect_rule_needs_no_backend_and_its_backends_are_still_resolved_for_the_status()
    {
        var (route, status) = TranslateOne(Route("""
            [{"filters":[{"type":"RequestRedirect","requestRedirect":{"scheme":"https"}}],"backendRefs":[{"name":"nope","port":80}]}]
            """));

        AssertCondition(status, "Accepted", true, "Accepted");
        AssertCondition(status, "ResolvedRefs", false, "BackendNotFound");
        var rule = Assert.Single(route!.Spec.Http);
        Assert.Empty(rule.Route);
        Assert.Equal(new HttpRedirect(null, null, null, "https", 302), rule.Redirect);
    }

    [Theory]
    [InlineData("""{"name":"nope","port":80}""", "BackendNotFound", "no Service shop/nope")]
    [InlineData("""{"name":"reviews-v1","port":81}""", "BackendNotFound", "has no port 81")]
    [InlineData("""{"name":"reviews-v1"}""", "BackendNotFound", "port is required")]
    [InlineData("""{"group":"multicluster.x-k8s.io","kind":"ServiceImport","name":"reviews-v1","port":80}""", "InvalidKind", "only Services")]
    [InlineData("""{"name":"other","namespace":"elsewhere","port":80}""", "RefNotPermitted", "another namespace")]
    public void An_unresolved_backend_sets_ResolvedRefs_false_with_the_Gateway_API_reason_and_its_rule_is_not_served(string backend, string reason, string message)
    {
        var (route, status) = TranslateOne(Route($$$"""
            [{"matches":[{"path":{"type":"Exact","value":"/a"}}],"backendRefs":[{{{backend}}}]},
             {"backendRefs":[{"name":"reviews-v1","port":80}]}]
            """));

        AssertCondition(status, "Accepted", true, "Accepted");
        AssertCondition(status, "ResolvedRefs", false, reason);
        Assert.Contains(message, status.Parents[0].Conditions[1].Message, StringComparison.Ordinal);
        Assert.Equal(["r.1.0"], route!.Spec.Http.Select(r => r.Name));
    }

    [Theory]
    [InlineData("""{"group":"","kind":"Service","name":"absent"}""", "NoMatchingParent", "no Service shop/absent")]
    [InlineData("""{"group":"","kind":"Service","name":"reviews","port":8080}""", "NoMatchingParent", "has no port 8080")]
    [InlineData("""{"group":"","kind":"Service","name":"multi","port":80}""", "UnsupportedValue", "every port")]
    [InlineData("""{"group":"","kind":"Service","name":"other","namespace":"elsewhere"}""", "UnsupportedValue", "consumer routes")]
    public void A_Service_parent_that_cannot_take_the_route_is_not_accepted_with_the_reason(string parent, string reason, string message)
    {
        var (route, status) = TranslateOne(Route("""[{"backendRefs":[{"name":"reviews-v1","port":80}]}]""", parents: $"\"parentRefs\":[{parent}]"));

        Assert.Null(route);
        AssertCondition(status, "Accepted", false, reason);
        Assert.Contains(message, status.Parents[0].Conditions[0].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_Gateway_parent_is_left_to_its_own_controller_and_gets_no_status_from_the_mesh()
    {
        var (route, status) = TranslateOne(Route("""[{"backendRefs":[{"name":"reviews-v1","port":80}]}]""",
            parents: "\"parentRefs\":[{\"name\":\"public-gateway\"},{\"group\":\"\",\"kind\":\"Service\",\"name\":\"reviews\"}]"));

        Assert.NotNull(route);
        var parent = Assert.Single(status.Parents);
        Assert.Equal("reviews", parent.ParentRef.GetProperty("name").GetString());
    }
}
