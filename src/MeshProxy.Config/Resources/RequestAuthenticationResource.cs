namespace MeshProxy.Config.Resources;

/// <summary>
/// Which JSON Web Tokens a workload accepts, in the shape and with the semantics of Istio's
/// RequestAuthentication: a request carrying a token that no rule validates is refused (401), a request
/// without one is left to AuthorizationPolicy (requestPrincipals, request.auth.*). The sidecar validates;
/// see src/MeshProxy.Sidecar/Authentication/README.md.
/// </summary>
public sealed record RequestAuthenticationResource(ObjectMeta Metadata, SourceLocation Source, RequestAuthenticationSpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "RequestAuthentication";

    public override string Kind => KindName;
}

/// <param name="MatchLabels">Labels a workload must all carry; empty selects every workload in scope (its namespace, or the mesh in the root namespace).</param>
public sealed record RequestAuthenticationSpec(IReadOnlyDictionary<string, string> MatchLabels, IReadOnlyList<JwtRule> JwtRules)
{
    public bool Selects(IReadOnlyDictionary<string, string> workloadLabels) =>
        MatchLabels.All(l => workloadLabels.TryGetValue(l.Key, out var v) && v == l.Value);
}

/// <summary>
/// One issuer. Keys come from <see cref="Jwks"/> (inline, validated when parsed), <see cref="JwksUri"/>
/// (fetched and cached by the sidecar) or <see cref="JwksFile"/> (a file on the sidecar's host, a mounted Secret or
/// ConfigMap, read and re-read by the sidecar); exactly one is set. Empty <see cref="Audiences"/> does not check
/// the token's aud. Where the token is looked for: <see cref="FromHeaders"/> and <see cref="FromParams"/>,
/// or, with neither written, the Authorization header with the "Bearer " prefix and the access_token query
/// parameter (Istio's defaults).
/// </summary>
public sealed record JwtRule(
    string Issuer,
    IReadOnlyList<string> Audiences,
    JsonWebKeySet? Jwks,
    string? JwksUri,
    string? JwksFile,
    IReadOnlyList<JwtHeaderLocation> FromHeaders,
    IReadOnlyList<string> FromParams,
    bool ForwardOriginalToken,
    IReadOnlyList<ClaimToHeader> OutputClaimToHeaders)
{
    public static readonly IReadOnlyList<JwtHeaderLocation> DefaultHeaders = [new("authorization", "Bearer ")];

    public static readonly IReadOnlyList<string> DefaultParams = ["access_token"];

    /// <summary>
    /// The audience check on a token's claims (a JSON object): without <see cref="Audiences"/> any aud passes;
    /// otherwise aud, a string or a list of strings, must name one of them. Shared by the sidecar and `meshproxy explain`.
    /// </summary>
    public bool AcceptsAudience(System.Text.Json.JsonElement claims)
    {
        if (Audiences.Count == 0)
        {
            return true;
        }

        if (!claims.TryGetProperty("aud", out var aud))
        {
            return false;
        }

        if (aud.ValueKind == System.Text.Json.JsonValueKind.String)
        {
            return Audiences.Contains(aud.GetString()!);
        }

        if (aud.ValueKind == System.Text.Json.JsonValueKind.Array)
        {
            foreach (var item in aud.EnumerateArray())
            {
                if (item.ValueKind == System.Text.Json.JsonValueKind.String && Audiences.Contains(item.GetString()!))
                {
                    return true;
                }
            }
        }

        return false;
    }
}

/// <summary>A header the token is read from (name lowercased), after <see cref="Prefix"/> (compared case-insensitively; empty for none).</summary>
public sealed record JwtHeaderLocation(string Name, string Prefix);

/// <summary>Copies one claim of a validated token into a request header the app reads (name lowercased).</summary>
public sealed record ClaimToHeader(string Header, string Claim);
