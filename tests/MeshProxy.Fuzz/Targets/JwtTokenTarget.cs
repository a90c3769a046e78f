using System.Security.Cryptography;
using System.Text;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Authentication;

namespace MeshProxy.Fuzz;

/// <summary>
/// The JWT parser and verifier, fed what a caller puts after "Bearer ", and the JWK Set parser, fed what a key
/// server answers. Beyond "no exception": a refused token has a reason; an accepted one uses a supported
/// algorithm, has JSON objects for header and payload and a string issuer, and its signing input is exactly the
/// text before the second dot; and no input verifies against keys made for this run (forging a signature would
/// be a finding too).
/// </summary>
internal static class JwtTokenTarget
{
    private static readonly JwtKeySet Keys = MakeKeys();

    private static readonly JwtRule Rule = new("https://issuer.fuzz", ["aud"], null, null, null, JwtRule.DefaultHeaders, JwtRule.DefaultParams, false, []);

    public static void Run(ReadOnlySpan<byte> input)
    {
        // A key server's answer: parsed or refused with a reason, never a throw.
        if (!JsonWebKeySet.TryParse(input, out var set, out var why))
        {
            FuzzTargets.Check(why.Length > 0, "a JWK Set refused without a reason");
        }
        else
        {
            FuzzTargets.Check(set.Keys.Count <= JsonWebKeySet.MaxKeys, "more keys than the limit");
        }

        var token = Encoding.Latin1.GetString(input);
        if (!JwtToken.TryParse(token, out var jwt, out var failure))
        {
            FuzzTargets.Check(failure != JwtFailure.None && jwt is null, $"refused without a reason ({failure})");
            return;
        }

        FuzzTargets.Check(failure == JwtFailure.None && jwt is not null, "accepted with a failure");
        FuzzTargets.Check(JwtKeySet.IsSupported(jwt!.Algorithm), $"accepted alg '{jwt.Algorithm}'");
        FuzzTargets.Check(jwt.Payload.ValueKind == System.Text.Json.JsonValueKind.Object, "payload is not an object");
        var second = token.IndexOf('.', token.IndexOf('.') + 1);
        FuzzTargets.Check(Encoding.ASCII.GetString(jwt.SigningInput) == token[..second], "the signing input is not the text before the second dot");
        FuzzTargets.Check(Keys.Verify(jwt) != JwtFailure.None, "a token verified against this run's keys");
        _ = RequestAuthenticator.CheckClaims(jwt.Payload, Rule, DateTimeOffset.UnixEpoch.AddYears(56));
    }

    private static JwtKeySet MakeKeys()
    {
        using var rsa = RSA.Create(2048);
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var r = rsa.ExportParameters(false);
        var e = ec.ExportParameters(false);
        var set = new JsonWebKeySet(
        [
            new JsonWebKey(JsonWebKeyType.Rsa, "rsa-1", null, null, r.Modulus!, r.Exponent!, [], []),
            new JsonWebKey(JsonWebKeyType.EllipticCurve, "ec-1", null, "P-256", [], [], e.Q.X!, e.Q.Y!),
            new JsonWebKey(JsonWebKeyType.Octet, "ed-1", null, "Ed25519", [], [], RandomNumberGenerator.GetBytes(32), []),
        ], []);
        return JwtKeySet.Build(set);
    }
}
