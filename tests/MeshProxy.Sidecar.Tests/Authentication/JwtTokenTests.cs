using System.Text;
using MeshProxy.Sidecar.Authentication;

namespace MeshProxy.Sidecar.Tests.Authentication;

public sealed class JwtTokenTests
{
    private static string B64(string json) => Convert.ToBase64String(Encoding.UTF8.GetBytes(json)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    [Theory]
    // Found by the fuzz target: invalid UTF-8 inside a claim once made GetString throw out of the parser.
    [InlineData("eyJhbGciOiJub25lIn0.eyJpc9MiOiJoL2vzc3Vlci5mdXp6IiwiYXVkIjoiYXVkIiwiaWF0IjoxNzk2NjU4NzI2LCJleHAiOjE3OTY2NjIzMjYsInN1YiI6ImFsaWNlIn0.", "Malformed")]
    [InlineData("", "Malformed")]
    [InlineData("a.b", "Malformed")]
    [InlineData("a.b.c.d", "Malformed")]
    [InlineData("e.e.e", "Malformed")]             // 4n+1 base64url length
    [InlineData("e+.e/.e=", "Malformed")]          // not the url alphabet
    public void Malformed_tokens_are_refused_without_an_exception(string token, string expected)
    {
        Assert.False(JwtToken.TryParse(token, out var jwt, out var failure));
        Assert.Null(jwt);
        Assert.Equal(expected, failure.ToString());
    }

    [Theory]
    [InlineData("""{"alg":"none"}""", "UnsupportedAlgorithm")]
    [InlineData("""{"alg":"HS256"}""", "UnsupportedAlgorithm")]
    [InlineData("""{"alg":"RS256","crit":["exp"]}""", "Malformed")]
    [InlineData("""{"alg":"RS256","alg":"none"}""", "Malformed")]  // duplicate names
    [InlineData("""{"alg":"RS256","kid":7}""", "Malformed")]
    public void Headers_that_must_not_be_processed_are_refused(string header, string expected)
    {
        Assert.False(JwtToken.TryParse($"{B64(header)}.{B64("""{"iss":"a"}""")}.AAAA", out _, out var failure));
        Assert.Equal(expected, failure.ToString());
    }

    [Fact]
    public void A_token_over_the_size_limit_is_refused_before_decoding()
    {
        var big = $"{B64("""{"alg":"RS256"}""")}.{B64("{\"iss\":\"a\",\"x\":\"" + new string('x', JwtToken.MaxLength) + "\"}")}.AAAA";
        Assert.False(JwtToken.TryParse(big, out _, out var failure));
        Assert.Equal(JwtFailure.Malformed, failure);
    }

    [Fact]
    public void A_well_formed_token_is_split_and_decoded()
    {
        var text = $"{B64("""{"alg":"ES256","kid":"k"}""")}.{B64("""{"iss":"https://i","sub":"s"}""")}.AAAA";
        Assert.True(JwtToken.TryParse(text, out var jwt, out _));
        Assert.Equal(("ES256", "k", "https://i"), (jwt!.Algorithm, jwt.KeyId, jwt.Issuer));
        Assert.Equal(text[..text.LastIndexOf('.')], Encoding.ASCII.GetString(jwt.SigningInput));
    }
}
