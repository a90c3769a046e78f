using System.Text.Json;

namespace MeshProxy.Authorization;

/// <summary>
/// What a validated JWT says about the request (Istio's request.auth.*): the request principal "iss/sub"
/// and the token's claims. Built by the sidecar's authentication step only after the signature, issuer,
/// audience and lifetime were checked; `meshproxy explain` builds one from claims an operator gives.
/// </summary>
internal sealed class RequestAuth
{
    private RequestAuth(string principal, JsonElement claims)
    {
        Principal = principal;
        Claims = claims;
    }

    /// <summary>iss + "/" + sub, as requestPrincipals and request.auth.principal match it.</summary>
    public string Principal { get; }

    /// <summary>The payload: a JSON object.</summary>
    public JsonElement Claims { get; }

    /// <summary>From a JSON object payload; null when it is not an object or has no string iss.</summary>
    public static RequestAuth? FromClaims(JsonElement claims)
    {
        if (claims.ValueKind != JsonValueKind.Object ||
            !claims.TryGetProperty("iss", out var iss) || iss.ValueKind != JsonValueKind.String)
        {
            return null;
        }

        var sub = claims.TryGetProperty("sub", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : string.Empty;
        return new RequestAuth($"{iss.GetString()}/{sub}", claims);
    }

    /// <summary>True when one value of the claim at <paramref name="path"/> matches one of <paramref name="matchers"/>; false when absent.</summary>
    public bool AnyValueMatches(IReadOnlyList<string> path, StringMatcher[] matchers)
    {
        var value = Claims;
        foreach (var name in path)
        {
            if (value.ValueKind != JsonValueKind.Object || !value.TryGetProperty(name, out value))
            {
                return false;
            }
        }

        if (value.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in value.EnumerateArray())
            {
                if (ScalarMatches(item, matchers))
                {
                    return true;
                }
            }

            return false;
        }

        return ScalarMatches(value, matchers);
    }

    /// <summary>A claim's value as a header carries it: strings as they are, numbers and booleans as JSON writes them; null otherwise.</summary>
    public string? ScalarText(string claim) =>
        Claims.TryGetProperty(claim, out var value) ? TextOf(value) : null;

    private static string? TextOf(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        _ => null,
    };

    private static bool ScalarMatches(JsonElement value, StringMatcher[] matchers) =>
        TextOf(value) is { } text && StringMatcher.Any(matchers, text);
}
