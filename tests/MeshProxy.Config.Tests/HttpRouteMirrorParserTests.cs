using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Tests;

/// <summary>HttpRoute's mirror and mirrorPercentage (Istio's shape): what parses, with the default share, and each bad input refused at its field with the reason.</summary>
public sealed class HttpRouteMirrorParserTests
{
    private static string Route(string rule) => $"""
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: {"{"} name: r, namespace: shop {"}"}
        spec:
          hosts: [b]
          http:
            - route: [{"{"} destination: {"{"} host: b {"}"} {"}"}]
              {rule}
        """;

    public static TheoryData<string, string, int?, double> Valid => new()
    {
        { "mirror: { host: b-shadow }", "b-shadow", null, 100 },
        { "mirror: { host: b-shadow, port: { number: 8080 } }", "b-shadow", 8080, 100 },
        { "mirror: { host: b-shadow }\n      mirrorPercentage: { value: 12.5 }", "b-shadow", null, 12.5 },
        { "mirror: { host: b-shadow }\n      mirrorPercentage: { value: 0 }", "b-shadow", null, 0 },
        { "mirror: { host: b-shadow }\n      mirrorPercentage: { value: 100 }", "b-shadow", null, 100 },
        { "mirror: { host: b-shadow }\n      mirrorPercentage: {}", "b-shadow", null, 100 },
    };

    [Theory]
    [MemberData(nameof(Valid))]
    public void A_mirror_parses_into_the_rule(string rule, string host, int? port, double percentage)
    {
        var result = ResourceParser.ParseText(Route(rule), "r.yaml");

        Assert.Empty(result.Errors);
        Assert.Empty(result.Warnings);
        Assert.Equal(new HttpMirror(host, port, percentage), result.OfKind<HttpRouteResource>().Single().Spec.Http[0].Mirror);
    }

    [Fact]
    public void A_rule_without_a_mirror_has_none()
    {
        var result = ResourceParser.ParseText(Route("name: plain"), "r.yaml");

        Assert.Empty(result.Errors);
        Assert.Null(result.OfKind<HttpRouteResource>().Single().Spec.Http[0].Mirror);
    }

    [Theory]
    [InlineData("mirror: {}", "spec.http[0].mirror.host", "is required")]
    [InlineData("mirror: b-shadow", "spec.http[0].mirror", "must be a mapping")]
    [InlineData("mirror: { host: b-shadow, port: { number: 0 } }", "spec.http[0].mirror.port.number", "between 1 and 65535")]
    [InlineData("mirror: { host: b-shadow }\n      mirrorPercentage: { value: 101 }", "spec.http[0].mirrorPercentage.value", "between 0 and 100")]
    [InlineData("mirror: { host: b-shadow }\n      mirrorPercentage: { value: -1 }", "spec.http[0].mirrorPercentage.value", "between 0 and 100")]
    [InlineData("mirror: { host: b-shadow }\n      mirrorPercentage: { value: half }", "spec.http[0].mirrorPercentage.value", "must be a number")]
    public void Bad_mirror_input_is_refused_at_its_field_with_the_reason(string rule, string field, string reason)
    {
        var result = ResourceParser.ParseText(Route(rule), "r.yaml");

        Assert.False(result.IsValid);
        var error = Assert.Single(result.Errors, e => e.FieldPath == field);
        Assert.Contains(reason, error.Reason, StringComparison.Ordinal);
        Assert.Equal("r.yaml", error.File);
    }

    [Fact]
    public void A_percentage_without_a_mirror_is_ignored_with_a_warning()
    {
        var result = ResourceParser.ParseText(Route("mirrorPercentage: { value: 50 }"), "r.yaml");

        Assert.Empty(result.Errors);
        Assert.Contains(result.Warnings, w => w.FieldPath == "spec.http[0].mirrorPercentage" && w.Reason == "ignored: the rule has no mirror");
        Assert.Null(result.OfKind<HttpRouteResource>().Single().Spec.Http[0].Mirror);
    }

    [Fact]
    public void A_redirect_rule_cannot_mirror()
    {
        var result = ResourceParser.ParseText("""
            apiVersion: meshproxy.io/v1alpha1
            kind: HttpRoute
            metadata: { name: r, namespace: shop }
            spec:
              hosts: [b]
              http:
                - redirect: { uri: /new }
                  mirror: { host: b-shadow }
            """, "r.yaml");

        Assert.Contains(result.Errors, e => e.FieldPath == "spec.http[0].mirror" && e.Reason.Contains("redirect", StringComparison.Ordinal));
    }
}
