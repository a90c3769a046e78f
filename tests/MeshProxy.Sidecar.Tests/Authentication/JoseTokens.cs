using System.Text.Json;
using MeshProxy.Testing;

namespace MeshProxy.Sidecar.Tests.Authentication;

/// <summary>Keys and tokens minted by the jose npm package (peers/jwt-mint.js), as a real issuer makes them.</summary>
internal sealed class JoseTokens
{
    public const string Issuer = "https://issuer.test";
    public const string Audience = "billing";

    private JoseTokens(JsonElement minted)
    {
        Minted = minted;
    }

    public JsonElement Minted { get; }

    /// <summary>The issuer's JWK Set (RSA rsa-1, P-256 ec-1, Ed25519 ed-1) as JSON text.</summary>
    public string Jwks => Minted.GetProperty("jwks").GetRawText();

    /// <summary>A set with only rsa-2, the key of <c>Token("rotated")</c>.</summary>
    public string RotatedJwks => Minted.GetProperty("rotatedJwks").GetRawText();

    public string Token(string name) => Minted.GetProperty("tokens").GetProperty(name).GetString()!;

    public static async Task<JoseTokens> MintAsync()
    {
        await using var node = NodePeer.Start("jwt-mint.js", Issuer, Audience);
        var minted = await node.NextAsync(e => e.GetProperty("type").GetString() is "minted" or "error", TimeSpan.FromSeconds(30));
        Assert.True(minted.GetProperty("type").GetString() == "minted", minted.GetRawText());
        return new JoseTokens(minted);
    }
}
