using System.Text.Json;
using MeshProxy.Authorization;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace MeshProxy.Sidecar.Authentication;

/// <summary>What the authentication step found: no token (left to policy), a valid one, or a refusal and why.</summary>
internal readonly record struct AuthenticationResult(JwtFailure Failure, RequestAuth? Auth, string? Issuer)
{
    public static readonly AuthenticationResult NoToken = new(JwtFailure.None, null, null);

    public bool Refused => Failure != JwtFailure.None;
}

/// <summary>
/// The RequestAuthentications that apply to one workload, compiled with the snapshot (null in the snapshot
/// when none applies, so a workload without JWT pays nothing). Istio's semantics: a request without a token
/// passes (AuthorizationPolicy decides, e.g. requestPrincipals: ["*"] to require one); a request with a
/// token must satisfy a rule of the token's issuer, in a location that rule reads, or it is refused.
/// </summary>
internal sealed class RequestAuthenticator
{
    /// <summary>Clock skew tolerated on exp and nbf (Envoy's default).</summary>
    public static readonly TimeSpan ClockSkew = TimeSpan.FromSeconds(60);

    private readonly Rule[] _rules;
    private readonly (string Name, string Prefix)[] _headers;
    private readonly string[] _params;
    private readonly string[] _claimHeaders;

    private RequestAuthenticator(Rule[] rules, IReadOnlyList<string> resources)
    {
        _rules = rules;
        Resources = resources;
        _headers = [.. rules.SelectMany(r => r.Spec.FromHeaders).Select(h => (h.Name, h.Prefix)).Distinct()];
        _params = [.. rules.SelectMany(r => r.Spec.FromParams).Distinct(StringComparer.Ordinal)];
        _claimHeaders = [.. rules.SelectMany(r => r.Spec.OutputClaimToHeaders).Select(o => o.Header).Distinct(StringComparer.Ordinal)];
    }

    /// <summary>namespace/name of each RequestAuthentication that applies, in order.</summary>
    public IReadOnlyList<string> Resources { get; }

    /// <summary>The issuers trusted, for the log line at snapshot time.</summary>
    public IEnumerable<string> Issuers => _rules.Select(r => r.Spec.Issuer).Distinct(StringComparer.Ordinal);

    /// <summary>
    /// The authenticator for a workload: RequestAuthentications of its namespace and of the root namespace whose
    /// selector its labels satisfy. Null when none applies. Throws <see cref="ConfigException"/> naming the resource
    /// when an inline key cannot be turned into a verifier.
    /// </summary>
    public static RequestAuthenticator? Build(IEnumerable<RequestAuthenticationResource> resources, string workloadNamespace, IReadOnlyDictionary<string, string> labels, string rootNamespace)
    {
        var applying = resources
            .Where(r => r.Metadata.Namespace == workloadNamespace || r.Metadata.Namespace == rootNamespace)
            .Where(r => r.Spec.Selects(labels))
            .OrderBy(r => r.Metadata.Namespace, StringComparer.Ordinal)
            .ThenBy(r => r.Metadata.Name, StringComparer.Ordinal)
            .ToList();
        if (applying.Count == 0)
        {
            return null;
        }

        var rules = new List<Rule>();
        var errors = new List<ConfigDiagnostic>();
        foreach (var resource in applying)
        {
            for (var i = 0; i < resource.Spec.JwtRules.Count; i++)
            {
                var spec = resource.Spec.JwtRules[i];
                var keys = spec.Jwks is { } inline ? JwtKeySet.Build(inline) : null;
                // The parser (the control plane's check too) checks each key's shape and sizes; only the crypto library
                // tells that an EC point lies on its curve or that an Ed25519 point decodes. A key it refuses would
                // leave the issuer's tokens without a key (401 for every one), so the snapshot is refused (NACKed,
                // the last good one keeps serving) naming the resource, rather than served silently short of a key.
                foreach (var refused in keys?.Skipped.Skip(spec.Jwks!.Skipped.Count) ?? [])
                {
                    errors.Add(new ConfigDiagnostic(resource.Source.File, resource.Source.Line, $"spec.jwtRules[{i}].jwks", $"{refused} (the sidecar cannot verify with this key)"));
                }

                rules.Add(new Rule(spec, keys));
            }
        }

        if (errors.Count > 0)
        {
            throw new ConfigException(errors);
        }

        return new RequestAuthenticator([.. rules], [.. applying.Select(r => $"{r.Metadata.Namespace}/{r.Metadata.Name}")]);
    }

    /// <summary>
    /// Finds and validates the request's token. On success the token's header is removed unless the rule
    /// forwards it, and its outputClaimToHeaders are set; whatever the outcome, headers those rules write are
    /// removed from what the caller sent, so a caller cannot pose as a claim.
    /// </summary>
    public ValueTask<AuthenticationResult> AuthenticateAsync(HttpContext context, JwksCache cache, TimeProvider time)
    {
        var headers = context.Request.Headers;
        foreach (var name in _claimHeaders)
        {
            headers.Remove(name);
        }

        var found = FindToken(context.Request, out var token, out var location);
        if (found != JwtFailure.None)
        {
            return new(new AuthenticationResult(found, null, null));
        }

        if (token is null)
        {
            return new(AuthenticationResult.NoToken);
        }

        if (!JwtToken.TryParse(token, out var jwt, out var failure))
        {
            return new(new AuthenticationResult(failure, null, null));
        }

        return ValidateAsync(context, jwt!, location, cache, time);
    }

    private async ValueTask<AuthenticationResult> ValidateAsync(HttpContext context, JwtToken jwt, TokenLocation location, JwksCache cache, TimeProvider time)
    {
        var failure = JwtFailure.UnknownIssuer;
        foreach (var rule in _rules)
        {
            if (rule.Spec.Issuer != jwt.Issuer || !rule.Reads(location))
            {
                continue;
            }

            var keys = rule.InlineKeys ?? await cache.GetAsync(rule.Spec.JwksUri ?? rule.Spec.JwksFile!, context.RequestAborted).ConfigureAwait(false);
            var outcome = keys is null ? JwtFailure.KeysUnavailable : keys.Verify(jwt);
            if (outcome == JwtFailure.None)
            {
                outcome = CheckClaims(jwt.Payload, rule.Spec, time.GetUtcNow());
            }

            if (outcome == JwtFailure.None)
            {
                var auth = RequestAuth.FromClaims(jwt.Payload)!;
                Apply(context.Request.Headers, rule.Spec, location, auth);
                return new AuthenticationResult(JwtFailure.None, auth, jwt.Issuer);
            }

            // The first rule's reason is the one reported; another rule of the same issuer may still accept.
            failure = failure == JwtFailure.UnknownIssuer ? outcome : failure;
        }

        return new AuthenticationResult(failure, null, jwt.Issuer);
    }

    /// <summary>exp and nbf (NumericDate, with <see cref="ClockSkew"/>) and aud when the rule lists audiences.</summary>
    internal static JwtFailure CheckClaims(JsonElement payload, JwtRule rule, DateTimeOffset now)
    {
        var seconds = now.ToUnixTimeSeconds();
        var skew = (long)ClockSkew.TotalSeconds;
        if (payload.TryGetProperty("exp", out var exp))
        {
            if (exp.ValueKind != JsonValueKind.Number || !exp.TryGetDouble(out var expires))
            {
                return JwtFailure.Malformed;
            }

            if (seconds > expires + skew)
            {
                return JwtFailure.Expired;
            }
        }

        if (payload.TryGetProperty("nbf", out var nbf))
        {
            if (nbf.ValueKind != JsonValueKind.Number || !nbf.TryGetDouble(out var notBefore))
            {
                return JwtFailure.Malformed;
            }

            if (seconds < notBefore - skew)
            {
                return JwtFailure.NotYetValid;
            }
        }

        return rule.AcceptsAudience(payload) ? JwtFailure.None : JwtFailure.AudienceNotAllowed;
    }

    /// <summary>
    /// The one token of the request, or <see cref="JwtFailure.MultipleTokens"/> when two locations (or two copies
    /// of a header) carry different ones. A header without the expected prefix holds no token (the app may use it
    /// for something else, e.g. Basic credentials).
    /// </summary>
    private JwtFailure FindToken(HttpRequest request, out string? token, out TokenLocation location)
    {
        token = null;
        location = default;
        foreach (var (name, prefix) in _headers)
        {
            var copies = request.Headers[name];
            for (var i = 0; i < copies.Count; i++)
            {
                var value = copies[i];
                if (value is null || !value.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }

                var candidate = value[prefix.Length..].Trim();
                if (candidate.Length == 0)
                {
                    continue;
                }

                if (token is not null && token != candidate)
                {
                    return JwtFailure.MultipleTokens;
                }

                token = candidate;
                location = new TokenLocation(name, prefix, null);
            }
        }

        if (_params.Length > 0 && request.QueryString.HasValue)
        {
            foreach (var name in _params)
            {
                var values = request.Query[name];
                foreach (var candidate in values)
                {
                    if (string.IsNullOrEmpty(candidate))
                    {
                        continue;
                    }

                    if (token is not null && token != candidate)
                    {
                        return JwtFailure.MultipleTokens;
                    }

                    if (token is null)
                    {
                        token = candidate;
                        location = new TokenLocation(null, null, name);
                    }
                }
            }
        }

        return JwtFailure.None;
    }

    private static void Apply(IHeaderDictionary headers, JwtRule rule, TokenLocation location, RequestAuth auth)
    {
        if (!rule.ForwardOriginalToken && location.Header is { } header)
        {
            headers.Remove(header);
        }

        foreach (var output in rule.OutputClaimToHeaders)
        {
            if (auth.ScalarText(output.Claim) is { } value && IsHeaderSafe(value))
            {
                headers[output.Header] = new StringValues(value);
            }
        }
    }

    /// <summary>A claim becomes a header value only if it cannot break the message (no control characters, no non-ASCII).</summary>
    private static bool IsHeaderSafe(string value)
    {
        foreach (var c in value)
        {
            if (c is < ' ' or > '~')
            {
                return false;
            }
        }

        return value.Length <= 8192;
    }

    /// <summary>Where the token was: a header (with its prefix) or a query parameter.</summary>
    private readonly record struct TokenLocation(string? Header, string? Prefix, string? Param);

    private sealed class Rule(JwtRule spec, JwtKeySet? inlineKeys)
    {
        public JwtRule Spec { get; } = spec;

        public JwtKeySet? InlineKeys { get; } = inlineKeys;

        public bool Reads(TokenLocation location) => location.Header is { } header
            ? Spec.FromHeaders.Any(h => h.Name == header && string.Equals(h.Prefix, location.Prefix, StringComparison.Ordinal))
            : Spec.FromParams.Contains(location.Param!);
    }
}
