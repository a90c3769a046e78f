using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Tests;

/// <summary>HttpRoute's query matches, header changes, rewrite, redirect and mirror: what parses, and each bad input refused at its field with the reason.</summary>
public sealed class HttpRouteFilterParserTests
{
    private static string Route(string rule) => $"""
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: {"{"} name: r, namespace: shop {"}"}
        spec:
          hosts: [b]
          http:
            - {rule}
        """;

    [Fact]
    public void Every_filter_field_parses_into_the_rule()
    {
        var result = ResourceParser.ParseText(Route("""
            match: [{ uri: { pathPrefix: /api/ }, queryParams: { v: { exact: "2" }, t: { regex: "[a-z]+" } } }]
                  headers:
                    request: { set: { X-Env: prod }, add: { x-tag: a }, remove: [X-Debug] }
                    response: { set: { cache-control: no-store } }
                  rewrite: { replacePrefixMatch: /v2, authority: "b.internal:8080" }
                  route: [{ destination: { host: b } }]
            """), "r.yaml");

        Assert.Empty(result.Errors);
        Assert.Empty(result.Warnings);
        var rule = result.OfKind<HttpRouteResource>().Single().Spec.Http[0];
        Assert.Equal(new StringMatch(StringMatchKind.PathPrefix, "/api/"), rule.Match[0].Uri);
        Assert.Equal([("v", StringMatchKind.Exact, "2"), ("t", StringMatchKind.Regex, "[a-z]+")], rule.Match[0].QueryParams.Select(q => (q.Name, q.Value.Kind, q.Value.Value)));
        Assert.Equal([new("x-env", "prod")], rule.Headers!.Request!.Set);
        Assert.Equal(["x-debug"], rule.Headers.Request.Remove);
        Assert.Equal(new HttpRewrite(new PathRewrite(PathRewriteKind.ReplacePrefixMatch, "/v2"), "b.internal:8080"), rule.Rewrite);
        Assert.Null(rule.Redirect);
    }

    [Fact]
    public void A_redirect_rule_needs_no_route_and_defaults_to_301()
    {
        var result = ResourceParser.ParseText(Route("""redirect: { uri: /new, scheme: https }"""), "r.yaml");

        Assert.Empty(result.Errors);
        var rule = result.OfKind<HttpRouteResource>().Single().Spec.Http[0];
        Assert.Empty(rule.Route);
        Assert.Equal(new HttpRedirect(new PathRewrite(PathRewriteKind.ReplaceFullPath, "/new"), null, null, "https", 301), rule.Redirect);
    }

    [Theory]
    [InlineData("redirect: { uri: /a }\n      route: [{ destination: { host: b } }]", "spec.http[0].redirect", "either route or redirect")]
    [InlineData("redirect: { uri: /a }\n      rewrite: { uri: /b }", "spec.http[0].rewrite", "not rewritten")]
    [InlineData("redirect: { redirectCode: 304 }", "spec.http[0].redirect.redirectCode", "must be one of 301, 302, 303, 307, 308")]
    [InlineData("redirect: { scheme: ftp }", "spec.http[0].redirect.scheme", "'ftp' is not one of")]
    [InlineData("redirect: { uri: /a, replacePrefixMatch: /b }", "spec.http[0].redirect", "at most one of uri, replaceFullPath or replacePrefixMatch")]
    [InlineData("rewrite: { replaceFullPath: relative }\n      route: [{ destination: { host: b } }]", "spec.http[0].rewrite.replaceFullPath", "must start with '/'")]
    [InlineData("rewrite: { uri: \"/a?b=c\" }\n      route: [{ destination: { host: b } }]", "spec.http[0].rewrite.uri", "must not contain '?'")]
    [InlineData("rewrite: { authority: \"a/b\" }\n      route: [{ destination: { host: b } }]", "spec.http[0].rewrite.authority", "not a host name")]
    [InlineData("rewrite: {}\n      route: [{ destination: { host: b } }]", "spec.http[0].rewrite", "set a path")]
    [InlineData("headers: { request: { set: { host: x } } }\n      route: [{ destination: { host: b } }]", "spec.http[0].headers.request.set.host", "use rewrite.authority")]
    [InlineData("headers: { response: { remove: [\"bad name\"] } }\n      route: [{ destination: { host: b } }]", "spec.http[0].headers.response.remove[0]", "not a header name")]
    [InlineData("headers: { request: { add: { x-a: \"a\\r\\nx-b: b\" } } }\n      route: [{ destination: { host: b } }]", "spec.http[0].headers.request.add.x-a", "CR, LF or NUL")]
    [InlineData("match: [{ queryParams: { v: { prefix: \"1\" } } }]\n      route: [{ destination: { host: b } }]", "spec.http[0].match[0].queryParams.v.prefix", "unknown field")]
    [InlineData("match: [{ queryParams: { v: { regex: \"(\" } } }]\n      route: [{ destination: { host: b } }]", "spec.http[0].match[0].queryParams.v.regex", "not a valid regular expression")]
    [InlineData("match: [{ method: { pathPrefix: GET } }]\n      route: [{ destination: { host: b } }]", "spec.http[0].match[0].method", "exactly one of exact, prefix or regex")]
    [InlineData("match: [{ uri: { pathPrefix: api } }]\n      route: [{ destination: { host: b } }]", "spec.http[0].match[0].uri.pathPrefix", "must start with '/'")]
    [InlineData("name: nothing", "spec.http[0].route", "is required")]
    [InlineData("redirect: { uri: /new }\n      mirror: { host: b-shadow }", "spec.http[0].mirror", "a rule with a redirect forwards nothing to mirror")]
    [InlineData("route: [{ destination: { host: b } }]\n      mirror: {}", "spec.http[0].mirror.host", "is required")]
    [InlineData("route: [{ destination: { host: b } }]\n      mirror: b-shadow", "spec.http[0].mirror", "must be a mapping")]
    [InlineData("route: [{ destination: { host: b } }]\n      mirror: { host: b-shadow, port: { number: 0 } }", "spec.http[0].mirror.port.number", "between 1 and 65535")]
    [InlineData("route: [{ destination: { host: b } }]\n      mirror: { host: b-shadow }\n      mirrorPercentage: { value: 101 }", "spec.http[0].mirrorPercentage.value", "between 0 and 100")]
    [InlineData("route: [{ destination: { host: b } }]\n      mirror: { host: b-shadow }\n      mirrorPercentage: { value: -1 }", "spec.http[0].mirrorPercentage.value", "between 0 and 100")]
    [InlineData("route: [{ destination: { host: b } }]\n      mirror: { host: b-shadow }\n      mirrorPercentage: { value: half }", "spec.http[0].mirrorPercentage.value", "must be a number")]
    public void Bad_filter_input_is_refused_at_its_field_with_the_reason(string rule, string field, string reason)
    {
        var result = ResourceParser.ParseText(Route(rule), "r.yaml");

        Assert.False(result.IsValid);
        Assert.Contains(result.Errors, e => e.FieldPath == field && e.Reason.Contains(reason, StringComparison.Ordinal));
    }

    /// <summary>A forwarding rule with <paramref name="rest"/> (mirror fields) after its route.</summary>
    private static string Mirrored(string rest) => Route("route: [{ destination: { host: b } }]\n      " + rest);

    public static TheoryData<string, string, int?, double> MirrorCases => new()
    {
        { "mirror: { host: b-shadow }", "b-shadow", null, 100 },
        { "mirror: { host: b-shadow, port: { number: 8080 } }", "b-shadow", 8080, 100 },
        { "mirror: { host: b-shadow }\n      mirrorPercentage: { value: 12.5 }", "b-shadow", null, 12.5 },
        { "mirror: { host: b-shadow }\n      mirrorPercentage: { value: 0 }", "b-shadow", null, 0 },
        { "mirror: { host: b-shadow }\n      mirrorPercentage: { value: 100 }", "b-shadow", null, 100 },
        { "mirror: { host: b-shadow }\n      mirrorPercentage: {}", "b-shadow", null, 100 },
    };

    [Theory]
    [MemberData(nameof(MirrorCases))]
    public void A_mirror_parses_into_the_rule(string rule, string host, int? port, double percentage)
    {
        var result = ResourceParser.ParseText(Mirrored(rule), "r.yaml");

        Assert.Empty(result.Errors);
        Assert.Empty(result.Warnings);
        Assert.Equal(new HttpMirror(host, port, percentage), result.OfKind<HttpRouteResource>().Single().Spec.Http[0].Mirror);
    }

    [Fact]
    public void A_rule_without_a_mirror_has_none()
    {
        var result = ResourceParser.ParseText(Mirrored("name: plain"), "r.yaml");

        Assert.Empty(result.Errors);
        Assert.Null(result.OfKind<HttpRouteResource>().Single().Spec.Http[0].Mirror);
    }

    [Fact]
    public void A_percentage_without_a_mirror_is_ignored_with_a_warning()
    {
        var result = ResourceParser.ParseText(Mirrored("mirrorPercentage: { value: 50 }"), "r.yaml");

        Assert.Empty(result.Errors);
        Assert.Contains(result.Warnings, w => w.FieldPath == "spec.http[0].mirrorPercentage" && w.Reason == "ignored: the rule has no mirror");
        Assert.Null(result.OfKind<HttpRouteResource>().Single().Spec.Http[0].Mirror);
    }
}
