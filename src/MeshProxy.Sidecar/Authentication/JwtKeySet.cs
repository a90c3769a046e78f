using System.Security.Cryptography;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;

namespace MeshProxy.Sidecar.Authentication;

/// <summary>
/// An issuer's public keys as verifiers, built once per JWK Set (inline: with the snapshot; fetched: per
/// fetch). Which key may check a token: the token's alg picks the key family (RS*/PS* RSA, ES256/384/512 the
/// matching NIST curve, EdDSA Ed25519), a key that names its own alg must name the token's, and a token with a
/// kid is checked only by keys with that kid. There are no symmetric keys at all, so an HS256 token "signed"
/// with an RSA public key (key confusion) is refused by its algorithm before any key is looked at.
/// Never disposed: a replaced set may still be checking a request in flight; its keys' native handles are
/// released by their finalizers.
/// </summary>
internal sealed class JwtKeySet
{
    private readonly Verifier[] _verifiers;

    private JwtKeySet(Verifier[] verifiers, IReadOnlyList<string> skipped)
    {
        _verifiers = verifiers;
        Skipped = skipped;
    }

    public int Count => _verifiers.Length;

    /// <summary>Keys of the set that could not be turned into verifiers, with the reason (logged for a fetched set).</summary>
    public IReadOnlyList<string> Skipped { get; }

    public static bool IsSupported(string algorithm) => Family(algorithm) != KeyFamily.None;

    public static JwtKeySet Build(JsonWebKeySet set)
    {
        var verifiers = new List<Verifier>(set.Keys.Count);
        var skipped = new List<string>(set.Skipped);
        foreach (var key in set.Keys)
        {
            try
            {
                switch (key.Type)
                {
                    case JsonWebKeyType.Rsa:
                        verifiers.Add(new Verifier(key, KeyFamily.Rsa, RSA.Create(new RSAParameters { Modulus = key.Modulus, Exponent = key.Exponent }), null, null));
                        break;
                    case JsonWebKeyType.EllipticCurve:
                        var curve = key.Curve switch
                        {
                            "P-256" => ECCurve.NamedCurves.nistP256,
                            "P-384" => ECCurve.NamedCurves.nistP384,
                            _ => ECCurve.NamedCurves.nistP521,
                        };

                        // ImportParameters checks that the point is on the curve (an invalid-curve key is refused here).
                        var family = key.Curve switch { "P-256" => KeyFamily.P256, "P-384" => KeyFamily.P384, _ => KeyFamily.P521 };
                        verifiers.Add(new Verifier(key, family, null, ECDsa.Create(new ECParameters { Curve = curve, Q = new ECPoint { X = key.X, Y = key.Y } }), null));
                        break;
                    default:
                        var ed = Ed25519Verifier.Create(key.X, out var why);
                        if (ed is null)
                        {
                            skipped.Add($"kid {key.Id ?? "(none)"}: {why}");
                            continue;
                        }

                        verifiers.Add(new Verifier(key, KeyFamily.Ed25519, null, null, ed));
                        break;
                }
            }
            catch (CryptographicException ex)
            {
                skipped.Add($"kid {key.Id ?? "(none)"}: {ex.Message}");
            }
        }

        return new JwtKeySet([.. verifiers], skipped);
    }

    /// <summary>Checks the token's signature with the keys that may; <see cref="JwtFailure.UnknownKey"/> when none may.</summary>
    public JwtFailure Verify(JwtToken token)
    {
        var family = Family(token.Algorithm);
        var candidates = 0;
        foreach (var verifier in _verifiers)
        {
            if (verifier.Family != family ||
                (verifier.Key.Algorithm is { } alg && alg != token.Algorithm) ||
                (token.KeyId is { } kid && verifier.Key.Id != kid))
            {
                continue;
            }

            candidates++;
            if (verifier.Verify(token.Algorithm, token.SigningInput, token.Signature))
            {
                return JwtFailure.None;
            }
        }

        return candidates == 0 ? JwtFailure.UnknownKey : JwtFailure.BadSignature;
    }

    private static KeyFamily Family(string algorithm) => algorithm switch
    {
        "RS256" or "RS384" or "RS512" or "PS256" or "PS384" or "PS512" => KeyFamily.Rsa,
        "ES256" => KeyFamily.P256,
        "ES384" => KeyFamily.P384,
        "ES512" => KeyFamily.P521,
        "EdDSA" => KeyFamily.Ed25519,
        _ => KeyFamily.None,
    };

    private enum KeyFamily
    {
        None,
        Rsa,
        P256,
        P384,
        P521,
        Ed25519,
    }

    private sealed class Verifier(JsonWebKey key, KeyFamily family, RSA? rsa, ECDsa? ecdsa, Ed25519Verifier? ed25519)
    {
        public JsonWebKey Key { get; } = key;

        public KeyFamily Family { get; } = family;

        public bool Verify(string algorithm, byte[] data, byte[] signature)
        {
            var hash = algorithm[2..] switch
            {
                "384" => HashAlgorithmName.SHA384,
                "512" => HashAlgorithmName.SHA512,
                _ => HashAlgorithmName.SHA256,
            };
            try
            {
                return Family switch
                {
                    KeyFamily.Rsa => rsa!.VerifyData(data, signature, hash, algorithm[0] == 'P' ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1),
                    KeyFamily.Ed25519 => ed25519!.Verify(data, signature),
                    // JWS carries r||s of fixed size (IEEE P1363), which is what VerifyData expects by default;
                    // a DER signature or one of another length is refused rather than converted.
                    _ => signature.Length == 2 * ((ecdsa!.KeySize + 7) / 8) && ecdsa.VerifyData(data, signature, hash),
                };
            }
            catch (CryptographicException)
            {
                return false;
            }
        }
    }
}
