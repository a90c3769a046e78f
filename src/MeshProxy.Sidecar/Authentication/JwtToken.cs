using System.Buffers.Text;
using System.Text;
using System.Text.Json;

namespace MeshProxy.Sidecar.Authentication;

/// <summary>Why a token was refused; each one is answered 401 and counted under its name.</summary>
internal enum JwtFailure
{
    None,
    /// <summary>Not three base64url segments of JSON objects, too long, or a header the sidecar will not process (crit).</summary>
    Malformed,
    /// <summary>alg none, an HMAC algorithm (HS*), or any other algorithm outside the list.</summary>
    UnsupportedAlgorithm,
    /// <summary>The token's iss names no rule of the RequestAuthentications that apply.</summary>
    UnknownIssuer,
    /// <summary>No key of the issuer's set has the token's kid, or none fits its algorithm.</summary>
    UnknownKey,
    /// <summary>The issuer's keys have never been fetched (jwksUri unreachable since start).</summary>
    KeysUnavailable,
    BadSignature,
    Expired,
    NotYetValid,
    AudienceNotAllowed,
    /// <summary>More than one token in the request (two locations, or a header sent twice): which one counts would be ambiguous.</summary>
    MultipleTokens,
}

/// <summary>
/// A compact-serialized JWS (RFC 7515) split and decoded, not yet verified. Parsing untrusted text:
/// <see cref="TryParse"/> never throws, bounds the size and the JSON depth, and refuses anything but the
/// compact form with JSON objects for header and payload. Keys embedded in the header (jwk, jku, x5u,
/// x5c) are never looked at: keys come only from the RequestAuthentication's set.
/// </summary>
internal sealed class JwtToken
{
    /// <summary>Largest token accepted, in characters (Envoy's header limit is 60 KiB; real tokens are under 4 KiB).</summary>
    public const int MaxLength = 16 * 1024;

    private const int MaxHeaderDepth = 4;
    private const int MaxPayloadDepth = 16;

    private JwtToken(string algorithm, string? keyId, byte[] signingInput, byte[] signature, JsonElement payload, string issuer)
    {
        Algorithm = algorithm;
        KeyId = keyId;
        SigningInput = signingInput;
        Signature = signature;
        Payload = payload;
        Issuer = issuer;
    }

    public string Algorithm { get; }

    public string? KeyId { get; }

    /// <summary>The ASCII bytes "header.payload" as sent: what the signature covers.</summary>
    public byte[] SigningInput { get; }

    public byte[] Signature { get; }

    /// <summary>The claims: a JSON object.</summary>
    public JsonElement Payload { get; }

    /// <summary>The iss claim (unverified until the signature is).</summary>
    public string Issuer { get; }

    public static bool TryParse(ReadOnlySpan<char> token, out JwtToken? jwt, out JwtFailure failure)
    {
        jwt = null;
        failure = JwtFailure.Malformed;
        if (token.IsEmpty || token.Length > MaxLength)
        {
            return false;
        }

        var first = token.IndexOf('.');
        if (first <= 0)
        {
            return false;
        }

        var second = token[(first + 1)..].IndexOf('.');
        if (second <= 0)
        {
            return false;
        }

        second += first + 1;
        var headerText = token[..first];
        var payloadText = token[(first + 1)..second];
        var signatureText = token[(second + 1)..];
        // An empty signature is what an alg "none" token carries: it is refused below, for its algorithm.
        if (signatureText.IndexOf('.') >= 0 || !IsBase64Url(headerText) || !IsBase64Url(payloadText) || (!signatureText.IsEmpty && !IsBase64Url(signatureText)))
        {
            return false;
        }

        if (!TryDecodeObject(headerText, MaxHeaderDepth, out var header) || !TryDecodeObject(payloadText, MaxPayloadDepth, out var payload))
        {
            return false;
        }

        // RFC 7515 4.1.11: a header naming extensions the recipient does not understand must be refused.
        if (header.TryGetProperty("crit", out _) || !header.TryGetProperty("alg", out var algElement) || algElement.ValueKind != JsonValueKind.String)
        {
            return false;
        }

        string? keyId = null;
        if (header.TryGetProperty("kid", out var kid))
        {
            if (kid.ValueKind != JsonValueKind.String)
            {
                return false;
            }

            keyId = kid.GetString();
        }

        if (!payload.TryGetProperty("iss", out var iss) || iss.ValueKind != JsonValueKind.String)
        {
            // Without an issuer no rule can claim the token.
            failure = JwtFailure.UnknownIssuer;
            return false;
        }

        var algorithm = algElement.GetString()!;
        if (!JwtKeySet.IsSupported(algorithm))
        {
            failure = JwtFailure.UnsupportedAlgorithm;
            return false;
        }

        var signature = new byte[Base64Url.GetMaxDecodedLength(signatureText.Length)];
        if (!TryDecode(signatureText, signature, out var signatureLength) || signatureLength == 0)
        {
            return false;
        }

        var signingInput = new byte[second];
        Encoding.ASCII.GetBytes(token[..second], signingInput);
        jwt = new JwtToken(algorithm, keyId, signingInput, signature[..signatureLength], payload, iss.GetString()!);
        failure = JwtFailure.None;
        return true;
    }

    /// <summary>
    /// Base64url without padding (RFC 7515 2). Base64Url.TryDecodeFromChars throws on some malformed input (a
    /// length of 4n+1, say) instead of returning false, so validity is checked first and a throw still caught.
    /// </summary>
    private static bool TryDecode(ReadOnlySpan<char> text, Span<byte> destination, out int written)
    {
        written = 0;
        if (text.Length % 4 == 1 || !Base64Url.IsValid(text))
        {
            return false;
        }

        try
        {
            return Base64Url.TryDecodeFromChars(text, destination, out written);
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private static bool IsBase64Url(ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '-' || c == '_'))
            {
                return false;
            }
        }

        return !text.IsEmpty;
    }

    private static bool TryDecodeObject(ReadOnlySpan<char> text, int maxDepth, out JsonElement value)
    {
        value = default;
        var bytes = new byte[Base64Url.GetMaxDecodedLength(text.Length)];
        // Utf8JsonReader does not check the bytes inside strings; GetString would then throw on a claim. Found by the fuzz target.
        if (!TryDecode(text, bytes, out var length) || !System.Text.Unicode.Utf8.IsValid(bytes.AsSpan(0, length)))
        {
            return false;
        }

        try
        {
            var reader = new Utf8JsonReader(bytes.AsSpan(0, length), new JsonReaderOptions { MaxDepth = maxDepth });
            value = JsonElement.ParseValue(ref reader);

            // ParseValue reads one value; bytes after it (a second object) make the segment malformed.
            if (reader.BytesConsumed != length && !IsWhitespace(bytes.AsSpan((int)reader.BytesConsumed, length - (int)reader.BytesConsumed)))
            {
                return false;
            }
        }
        catch (JsonException)
        {
            return false;
        }

        return value.ValueKind == JsonValueKind.Object && !HasDuplicateNames(value);
    }

    private static bool IsWhitespace(ReadOnlySpan<byte> rest) => rest.IndexOfAnyExcept(" \t\r\n"u8) < 0;

    /// <summary>
    /// RFC 7515 4: a header with duplicate names is refused (or the last one used); parsers differ on which
    /// duplicate wins, which has turned "iss" or "aud" ambiguity into bypasses elsewhere. Refused at the top
    /// level of header and payload, where the claims that decide live.
    /// </summary>
    private static bool HasDuplicateNames(JsonElement value)
    {
        var count = 0;
        foreach (var _ in value.EnumerateObject())
        {
            count++;
        }

        if (count < 2)
        {
            return false;
        }

        var names = new HashSet<string>(count, StringComparer.Ordinal);
        foreach (var property in value.EnumerateObject())
        {
            if (!names.Add(property.Name))
            {
                return true;
            }
        }

        return false;
    }
}
