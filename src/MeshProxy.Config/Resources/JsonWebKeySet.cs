using System.Buffers.Text;
using System.Text;
using System.Text.Json;

namespace MeshProxy.Config.Resources;

public enum JsonWebKeyType
{
    Rsa,
    EllipticCurve,
    /// <summary>An Edwards-curve key (kty OKP, crv Ed25519).</summary>
    Octet,
}

/// <summary>
/// One public signing key of a JWK Set (RFC 7517), decoded and size-checked but not yet a crypto object: the
/// control plane and the CLI validate with it, the sidecar builds its verifiers from it.
/// </summary>
/// <param name="Curve">P-256, P-384, P-521 or Ed25519; null for RSA.</param>
/// <param name="Algorithm">The key's alg, when the set names one: a token must then use that algorithm.</param>
public sealed record JsonWebKey(JsonWebKeyType Type, string? Id, string? Algorithm, string? Curve, byte[] Modulus, byte[] Exponent, byte[] X, byte[] Y);

/// <summary>
/// A JWK Set, as written inline in a RequestAuthentication or served at a jwksUri. Keys the sidecar cannot
/// verify with (symmetric "oct" keys, encryption keys, RSA under 2048 bits, unknown curves or algorithms) are
/// left out and named in <see cref="Skipped"/>: an inline set refuses them, a fetched one logs them.
/// </summary>
public sealed record JsonWebKeySet(IReadOnlyList<JsonWebKey> Keys, IReadOnlyList<string> Skipped)
{
    /// <summary>Largest JWK Set read (inline text or fetched body): a few dozen RSA-4096 keys fit.</summary>
    public const int MaxBytes = 64 * 1024;

    public const int MaxKeys = 64;

    /// <summary>The signature algorithms the sidecar verifies. HMAC (HS*) and "none" are never accepted.</summary>
    public static readonly IReadOnlyList<string> Algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

    public static bool TryParse(string text, out JsonWebKeySet set, out string error) =>
        TryParse(Encoding.UTF8.GetBytes(text), out set, out error);

    /// <summary>Never throws on any input; false with a reason when the text is not a JWK Set.</summary>
    public static bool TryParse(ReadOnlySpan<byte> utf8, out JsonWebKeySet set, out string error)
    {
        set = new JsonWebKeySet([], []);
        if (utf8.Length > MaxBytes)
        {
            error = $"is {utf8.Length} bytes, more than the {MaxBytes} a JWK Set may have";
            return false;
        }

        // Utf8JsonReader does not check the bytes inside strings, and GetString would throw on them later.
        if (!System.Text.Unicode.Utf8.IsValid(utf8))
        {
            error = "is not UTF-8 text";
            return false;
        }

        JsonElement root;
        try
        {
            var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { MaxDepth = 8 });
            root = JsonElement.ParseValue(ref reader);
        }
        catch (JsonException ex)
        {
            error = $"is not JSON ({ex.Message})";
            return false;
        }

        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("keys", out var keys) || keys.ValueKind != JsonValueKind.Array)
        {
            error = "is not a JWK Set: an object with a \"keys\" array";
            return false;
        }

        if (keys.GetArrayLength() > MaxKeys)
        {
            error = $"has {keys.GetArrayLength()} keys, more than {MaxKeys}";
            return false;
        }

        var result = new List<JsonWebKey>();
        var skipped = new List<string>();
        var index = 0;
        foreach (var key in keys.EnumerateArray())
        {
            if (TryReadKey(key, out var jwk, out var why))
            {
                result.Add(jwk);
            }
            else
            {
                skipped.Add($"keys[{index}]{KidOf(key)}: {why}");
            }

            index++;
        }

        set = new JsonWebKeySet(result, skipped);
        error = string.Empty;
        return true;
    }

    private static string KidOf(JsonElement key) =>
        key.ValueKind == JsonValueKind.Object && key.TryGetProperty("kid", out var kid) && kid.ValueKind == JsonValueKind.String ? $" (kid {kid.GetString()})" : string.Empty;

    private static bool TryReadKey(JsonElement key, out JsonWebKey jwk, out string why)
    {
        jwk = null!;
        if (key.ValueKind != JsonValueKind.Object)
        {
            why = "not an object";
            return false;
        }

        var kty = Text(key, "kty");
        var kid = Text(key, "kid");
        var alg = Text(key, "alg");
        var use = Text(key, "use");
        var crv = Text(key, "crv");
        if (use is not null && use != "sig")
        {
            why = $"use '{use}' is not sig";
            return false;
        }

        if (alg is not null && !Algorithms.Contains(alg))
        {
            why = $"alg '{alg}' is not one of {string.Join(", ", Algorithms)}";
            return false;
        }

        switch (kty)
        {
            case "RSA":
                var n = Bytes(key, "n");
                var e = Bytes(key, "e");
                if (n is null || e is null || e.Length is 0 or > 8)
                {
                    why = "an RSA key needs base64url n and e";
                    return false;
                }

                // Leading zero octets do not count towards the modulus size.
                var bits = (n.AsSpan().TrimStart((byte)0).Length) * 8;
                if (bits < 2048 || bits > 8192)
                {
                    why = $"an RSA modulus of about {bits} bits is outside 2048-8192";
                    return false;
                }

                if (alg is not null && !alg.StartsWith("RS", StringComparison.Ordinal) && !alg.StartsWith("PS", StringComparison.Ordinal))
                {
                    why = $"alg '{alg}' does not fit an RSA key";
                    return false;
                }

                jwk = new JsonWebKey(JsonWebKeyType.Rsa, kid, alg, null, n.AsSpan().TrimStart((byte)0).ToArray(), e, [], []);
                break;
            case "EC":
                var size = crv switch { "P-256" => 32, "P-384" => 48, "P-521" => 66, _ => 0 };
                var expected = crv switch { "P-256" => "ES256", "P-384" => "ES384", _ => "ES512" };
                var x = Bytes(key, "x");
                var y = Bytes(key, "y");
                if (size == 0)
                {
                    why = $"curve '{crv}' is not P-256, P-384 or P-521";
                    return false;
                }

                if (x?.Length != size || y?.Length != size)
                {
                    why = $"a {crv} key needs base64url x and y of {size} bytes";
                    return false;
                }

                if (alg is not null && alg != expected)
                {
                    why = $"alg '{alg}' does not fit a {crv} key ({expected})";
                    return false;
                }

                jwk = new JsonWebKey(JsonWebKeyType.EllipticCurve, kid, alg, crv, [], [], x, y);
                break;
            case "OKP":
                var ed = Bytes(key, "x");
                if (crv != "Ed25519" || ed?.Length != 32)
                {
                    why = $"an OKP key must be Ed25519 with a 32-byte x (crv '{crv}')";
                    return false;
                }

                if (alg is not null && alg != "EdDSA")
                {
                    why = $"alg '{alg}' does not fit an Ed25519 key (EdDSA)";
                    return false;
                }

                jwk = new JsonWebKey(JsonWebKeyType.Octet, kid, alg, crv, [], [], ed, []);
                break;
            case "oct":
                why = "symmetric (oct) keys are not accepted: HMAC tokens are refused";
                return false;
            default:
                why = $"kty '{kty}' is not RSA, EC or OKP";
                return false;
        }

        why = string.Empty;
        return true;
    }

    private static string? Text(JsonElement key, string name) =>
        key.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static byte[]? Bytes(JsonElement key, string name)
    {
        if (Text(key, name) is not { Length: > 0 and <= 2048 } text)
        {
            return null;
        }

        // TryDecodeFromChars throws (rather than returning false) on characters outside the alphabet.
        if (!Base64Url.IsValid(text))
        {
            return null;
        }

        var buffer = new byte[Base64Url.GetMaxDecodedLength(text.Length)];
        return Base64Url.TryDecodeFromChars(text, buffer, out var written) ? buffer[..written] : null;
    }
}
