using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Tests.Routing;

/// <summary>Path rewriting by the Gateway API's table and Istio's prefix rewrite, and query parameter matching, on rules built as the sidecar builds them.</summary>
public sealed class RouteFilterRulesTests
{
    public static TheoryData<string, string, string, string> GatewayPrefixTable() => new()
    {
        // request path, PathPrefix match, ReplacePrefixMatch, the path sent: the Gateway API's HTTPPathModifier table
        { "/foo/bar", "/foo", "/xyz", "/xyz/bar" },
        { "/foo/bar", "/foo", "/xyz/", "/xyz/bar" },
        { "/foo/bar", "/foo/", "/xyz", "/xyz/bar" },
        { "/foo/bar", "/foo/", "/xyz/", "/xyz/bar" },
        { "/foo", "/foo", "/xyz", "/xyz" },
        { "/foo/", "/foo", "/xyz", "/xyz/" },
        { "/foo/bar", "/foo", "", "/bar" },
        { "/foo/", "/foo", "", "/" },
        { "/foo", "/foo", "", "/" },
        { "/foo/", "/foo", "/", "/" },
        { "/foo", "/foo", "/", "/" },
        // beyond the table: the root prefix, and deeper prefixes
        { "/foo/bar", "/", "/xyz", "/xyz/foo/bar" },
        { "/a/b/c", "/a/b", "/z", "/z/c" },
    };

    [Theory]
    [MemberData(nameof(GatewayPrefixTable))]
    public void ReplacePrefixMatch_on_a_path_prefix_follows_the_Gateway_API_table(string path, string prefix, string replacement, string expected)
    {
        var match = new StringMatch(StringMatchKind.PathPrefix, prefix);
        Assert.True(match.IsMatch(path));
        Assert.Equal(expected, RouteFilters.Rewrite(path, new PathRewrite(PathRewriteKind.ReplacePrefixMatch, replacement), match));
        // Istio's rewrite.uri on a path prefix match means the same.
        Assert.Equal(expected, RouteFilters.Rewrite(path, new PathRewrite(PathRewriteKind.Uri, replacement), match));
    }

    [Theory]
    [InlineData("/api/v1/x", StringMatchKind.Prefix, "/api/v1", PathRewriteKind.Uri, "/v2", "/v2/x")]       // Istio: the characters matched, replaced as they are
    [InlineData("/apix", StringMatchKind.Prefix, "/api", PathRewriteKind.Uri, "/v2", "/v2x")]
    [InlineData("/api/x", StringMatchKind.Exact, "/api/x", PathRewriteKind.Uri, "/other", "/other")]       // not a prefix match: the whole path
    [InlineData("/api/x", StringMatchKind.Regex, "/api/.*", PathRewriteKind.Uri, "/other", "/other")]
    [InlineData("/api/x", StringMatchKind.PathPrefix, "/api", PathRewriteKind.ReplaceFullPath, "/other", "/other")]
    [InlineData("/api/x", null, "", PathRewriteKind.ReplacePrefixMatch, "/v2", "/v2/api/x")]                // no prefix matched: put in front
    public void Other_rewrites_replace_what_they_say(string path, StringMatchKind? kind, string value, PathRewriteKind rewrite, string replacement, string expected)
    {
        var match = kind is { } k ? new StringMatch(k, value) : null;
        Assert.Equal(expected, RouteFilters.Rewrite(path, new PathRewrite(rewrite, replacement), match));
    }

    [Theory]
    [InlineData("?v=2", true)]
    [InlineData("?a=1&v=2", true)]
    [InlineData("?v=2&v=3", true)]      // the first value counts
    [InlineData("?v=3&v=2", false)]
    [InlineData("?V=2", false)]         // names are case-sensitive
    [InlineData("?v=%32", true)]        // values are compared decoded
    [InlineData("?v=2&t=abc", true)]
    [InlineData("", false)]
    public void Query_parameter_matches_compare_the_first_value_of_the_exact_name(string query, bool matches)
    {
        var snapshot = SnapshotBuilder.Build(ResourceParser.ParseText(new MeshYaml("store", 1).Service("billing", 80, "HTTP", 9001).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: HttpRoute
            metadata: { name: billing, namespace: test }
            spec:
              hosts: [billing]
              http:
                - name: v2
                  match:
                    - queryParams: { v: { exact: "2" } }
                  route: [{ destination: { host: billing } }]
                - name: tenant
                  match:
                    - queryParams: { t: { regex: "[0-9]+" } }
                  route: [{ destination: { host: billing } }]
            """).ToString(), "test.yaml"), "v1", "test.yaml", DateTimeOffset.UnixEpoch);
        Assert.True(snapshot.Services.TryResolve("billing", 80, out var vhost));
        var context = new DefaultHttpContext();
        context.Request.Path = "/";
        context.Request.QueryString = new QueryString(query);

        Assert.Equal(matches ? "v2" : null, vhost!.Match(context.Request)?.Name);
    }

    [Fact]
    public void A_rule_without_header_changes_rewrite_or_redirect_has_no_filters()
    {
        var snapshot = SnapshotBuilder.Build(ResourceParser.ParseText(new MeshYaml("store", 1).Service("billing", 80, "HTTP", 9001).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: HttpRoute
            metadata: { name: billing, namespace: test }
            spec:
              hosts: [billing]
              http:
                - name: plain
                  match: [{ uri: { prefix: /a } }]
                  route: [{ destination: { host: billing } }]
                - name: changed
                  headers: { request: { set: { x-a: b } } }
                  route: [{ destination: { host: billing } }]
            """).ToString(), "test.yaml"), "v1", "test.yaml", DateTimeOffset.UnixEpoch);
        var rules = snapshot.Services.VirtualHosts.Single(v => v.ServiceName == "billing").Rules;

        Assert.Null(rules[0].Filters);
        Assert.NotNull(rules[1].Filters);
    }
}
