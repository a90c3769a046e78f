using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Tests;

public sealed class RequestAuthenticationParserTests
{
    private const string Header = """
        apiVersion: meshproxy.io/v1alpha1
        kind: RequestAuthentication
        metadata:
          name: jwt
          namespace: billing

        """;

    // A real P-256 public key (jose-generated); the RSA modulus below is 2048 bits of 0x01 bytes, shape only.
    private const string EcKey = """{"kty":"EC","crv":"P-256","kid":"ec-1","x":"Ww1DyiyX1fEJpWMqsgzu-jFWp9_RSQSDqve68E3_bJ8","y":"LMAPTe3ZnO2lSOpzTPKFE05feNjhJv7ML1GWCcHd-dg"}""";

    private static ParseResult Parse(string body) => ResourceParser.ParseText(Header + body, "jwt.yaml");

    private static ConfigDiagnostic ErrorAt(string body, string path)
    {
        var result = Parse(body);
        Assert.Empty(result.Resources);
        return Assert.Single(result.Errors, e => e.FieldPath == path);
    }

    [Fact]
    public void Reads_every_field_with_istio_names_and_istio_defaults()
    {
        var result = Parse($$"""
            spec:
              selector:
                matchLabels: { app: billing }
              jwtRules:
              - issuer: https://issuer.example
                audiences: [billing, "billing.example.com"]
                jwks: '{"keys":[{{EcKey}}]}'
                fromHeaders:
                - name: X-Jwt
                - name: Authorization
                  prefix: "Bearer "
                fromParams: [token]
                forwardOriginalToken: true
                outputClaimToHeaders:
                - header: X-Jwt-Sub
                  claim: sub
              - issuer: https://other.example
                jwksUri: https://other.example/jwks.json
            """).ThrowIfInvalid();

        var ra = Assert.IsType<RequestAuthenticationResource>(Assert.Single(result.Resources));
        Assert.Equal("billing", ra.Spec.MatchLabels["app"]);
        var first = ra.Spec.JwtRules[0];
        Assert.Equal("https://issuer.example", first.Issuer);
        Assert.Equal(["billing", "billing.example.com"], first.Audiences);
        var key = Assert.Single(first.Jwks!.Keys);
        Assert.Equal(("ec-1", "P-256", 32), (key.Id, key.Curve, key.X.Length));
        Assert.Equal([new JwtHeaderLocation("x-jwt", ""), new JwtHeaderLocation("authorization", "Bearer ")], first.FromHeaders);
        Assert.Equal(["token"], first.FromParams);
        Assert.True(first.ForwardOriginalToken);
        Assert.Equal(new ClaimToHeader("x-jwt-sub", "sub"), Assert.Single(first.OutputClaimToHeaders));

        var second = ra.Spec.JwtRules[1];
        Assert.Equal("https://other.example/jwks.json", second.JwksUri);
        Assert.Null(second.Jwks);
        Assert.Equal(JwtRule.DefaultHeaders, second.FromHeaders);
        Assert.Equal(JwtRule.DefaultParams, second.FromParams);
        Assert.False(second.ForwardOriginalToken);
    }

    [Theory]
    [InlineData("- jwksUri: https://x/jwks", "spec.jwtRules[0].issuer", "required")]
    [InlineData("- issuer: a", "spec.jwtRules[0]", "exactly one of jwks")]
    [InlineData("- issuer: a\n    jwksUri: https://x/j\n    jwks: '{\"keys\":[]}'", "spec.jwtRules[0]", "exactly one of jwks")]
    [InlineData("- issuer: a\n    jwksUri: ftp://x/j", "spec.jwtRules[0].jwksUri", "http")]
    [InlineData("- issuer: a\n    jwksUri: https://x/j\n    jwksFile: /etc/jwks.json", "spec.jwtRules[0]", "exactly one of jwks")]
    [InlineData("- issuer: a\n    jwksFile: keys/jwks.json", "spec.jwtRules[0].jwksFile", "not an absolute path")]
    [InlineData("- issuer: a\n    jwks: 'not json'", "spec.jwtRules[0].jwks", "not JSON")]
    [InlineData("- issuer: a\n    jwks: '{\"keys\":[]}'", "spec.jwtRules[0].jwks", "no keys")]
    [InlineData("- issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}'", "spec.jwtRules[0].jwks", "symmetric")]
    [InlineData("- issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}'", "spec.jwtRules[0].jwks", "2048")]
    [InlineData("- issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"HS256\",\"x\":\"AA\",\"y\":\"AA\"}]}'", "spec.jwtRules[0].jwks", "alg 'HS256'")]
    [InlineData("- issuer: a\n    jwksUri: https://x/j\n    audience: [x]", "spec.jwtRules[0].audience", "unknown field")]
    [InlineData("- issuer: a\n    jwksUri: https://x/j\n    fromCookies: [session]", "spec.jwtRules[0].fromCookies", "not supported")]
    [InlineData("- issuer: a\n    jwksUri: https://x/j\n    outputClaimToHeaders: [{header: host, claim: sub}]", "spec.jwtRules[0].outputClaimToHeaders[0].header", "not a header a claim may be written to")]
    [InlineData("- issuer: a\n    jwksUri: https://x/j\n  - issuer: a\n    jwksUri: https://y/j", "spec.jwtRules[1].issuer", "another rule")]
    public void Bad_rules_are_refused_with_the_field_and_the_reason(string rules, string path, string reason)
    {
        var error = ErrorAt($"spec:\n  jwtRules:\n  {rules}\n", path);
        Assert.Contains(reason, error.Reason, StringComparison.Ordinal);
        Assert.Equal("jwt.yaml", error.File);
    }

    [Fact]
    public void A_plain_http_jwks_uri_off_this_host_is_warned_about()
    {
        var result = Parse("spec:\n  jwtRules:\n  - issuer: a\n    jwksUri: http://keys.example/jwks\n");
        Assert.Empty(result.Errors);
        Assert.Contains(result.Warnings, w => w.FieldPath == "spec.jwtRules[0].jwksUri" && w.Reason.Contains("https", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("[]")]
    [InlineData("{\"keys\":{}}")]
    [InlineData("{\"keys\":[1,\"x\",null]}")]
    [InlineData("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"!!\",\"e\":\"AQAB\"}]}")]
    [InlineData("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"}]}")]
    public void A_jwk_set_parser_never_throws_and_never_accepts_a_broken_key(string text)
    {
        if (JsonWebKeySet.TryParse(text, out var set, out var error))
        {
            Assert.Empty(set.Keys);
        }
        else
        {
            Assert.NotEmpty(error);
        }
    }
}
