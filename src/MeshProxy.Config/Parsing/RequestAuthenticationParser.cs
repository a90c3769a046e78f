using MeshProxy.Config.Resources;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.Config.Parsing;

/// <summary>
/// Reads a RequestAuthentication. As for AuthorizationPolicy, an unknown field is an error: a misspelt
/// "audiences" silently ignored would accept tokens minted for any other service.
/// </summary>
internal static class RequestAuthenticationParser
{
    private static readonly string[] SpecFields = ["selector", "jwtRules"];
    private static readonly string[] RuleFields = ["issuer", "audiences", "jwks", "jwksUri", "jwksFile", "fromHeaders", "fromParams", "forwardOriginalToken", "outputClaimToHeaders"];

    // Headers the sidecar owns or that frame the message: a claim must not overwrite them.
    private static readonly string[] ReservedHeaders = ["host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "x-forwarded-client-cert"];

    public static Resource? Parse(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        var selector = spec.Map("selector");
        var matchLabels = selector?.StringMap("matchLabels") ?? new Dictionary<string, string>();
        selector?.RejectUnknown();
        RejectUnknown(spec, SpecFields);

        var rules = new List<JwtRule>();
        var issuers = new HashSet<string>(StringComparer.Ordinal);
        foreach (var rule in spec.Maps("jwtRules"))
        {
            if (ParseRule(rule) is { } parsed)
            {
                if (!issuers.Add(parsed.Issuer))
                {
                    rule.Error("issuer", $"issuer '{parsed.Issuer}' has another rule in this resource; a token must meet one rule only");
                }

                rules.Add(parsed);
            }
        }

        return new RequestAuthenticationResource(meta, source, new RequestAuthenticationSpec(matchLabels, rules));
    }

    private static JwtRule? ParseRule(YamlMap rule)
    {
        RejectUnknown(rule, RuleFields);

        var issuer = rule.String("issuer", required: true);
        var audiences = rule.Strings("audiences");
        var jwksText = rule.String("jwks");
        var jwksUri = rule.String("jwksUri");
        var jwksFile = rule.String("jwksFile");
        JsonWebKeySet? jwks = null;
        if ((jwksText is null ? 0 : 1) + (jwksUri is null ? 0 : 1) + (jwksFile is null ? 0 : 1) != 1)
        {
            rule.Sink.Error(rule.Node, rule.Path, "needs exactly one of jwks (the keys inline), jwksUri (where to fetch them) or jwksFile (a file the sidecar reads)");
        }

        if (jwksFile is not null && !jwksFile.StartsWith('/'))
        {
            // Relative to what? The sidecar's working directory is nobody's choice; a mounted volume has an absolute path.
            rule.Error("jwksFile", $"'{jwksFile}' is not an absolute path");
        }

        if (jwksText is not null)
        {
            if (!JsonWebKeySet.TryParse(jwksText, out var set, out var why))
            {
                rule.Error("jwks", why);
            }
            else if (set.Skipped.Count > 0)
            {
                rule.Error("jwks", $"has keys that cannot verify tokens: {string.Join("; ", set.Skipped)}");
            }
            else if (set.Keys.Count == 0)
            {
                rule.Error("jwks", "has no keys");
            }
            else
            {
                jwks = set;
            }
        }

        if (jwksUri is not null)
        {
            if (!Uri.TryCreate(jwksUri, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp))
            {
                rule.Error("jwksUri", $"'{jwksUri}' is not an absolute http:// or https:// URL");
            }
            else if (uri.Scheme == Uri.UriSchemeHttp && !uri.IsLoopback)
            {
                rule.Sink.Warning(rule.Find("jwksUri"), rule.Child("jwksUri"),
                    $"'{jwksUri}' is plain http: whoever is on the path can substitute keys and mint tokens; use https");
            }
        }

        var headers = new List<JwtHeaderLocation>();
        foreach (var header in rule.Maps("fromHeaders"))
        {
            var name = header.String("name", required: true);
            var prefix = header.String("prefix") ?? string.Empty;
            header.RejectUnknown();
            if (name is not null)
            {
                if (!IsHeaderName(name))
                {
                    header.Error("name", $"'{name}' is not a header name");
                }

                headers.Add(new JwtHeaderLocation(name.ToLowerInvariant(), prefix));
            }
        }

        var parameters = rule.Strings("fromParams");
        var forward = rule.Bool("forwardOriginalToken") ?? false;
        var outputs = new List<ClaimToHeader>();
        foreach (var output in rule.Maps("outputClaimToHeaders"))
        {
            var header = output.String("header", required: true);
            var claim = output.String("claim", required: true);
            output.RejectUnknown();
            if (header is null || claim is null)
            {
                continue;
            }

            if (!IsHeaderName(header) || ReservedHeaders.Contains(header.ToLowerInvariant()))
            {
                output.Error("header", $"'{header}' is not a header a claim may be written to");
            }

            outputs.Add(new ClaimToHeader(header.ToLowerInvariant(), claim));
        }

        if (issuer is null)
        {
            return null;
        }

        // Istio's defaults apply only when neither location list is written.
        var noLocation = headers.Count == 0 && parameters.Count == 0;
        return new JwtRule(issuer, audiences, jwks, jwksUri, jwksFile,
            noLocation ? JwtRule.DefaultHeaders : headers,
            noLocation ? JwtRule.DefaultParams : parameters,
            forward, outputs);
    }

    /// <summary>Istio fields this sidecar does not implement get a reason; anything else is an unknown field. Both are errors.</summary>
    private static void RejectUnknown(YamlMap map, string[] known)
    {
        foreach (var key in ((YamlMappingNode)map.Node).Children.Keys.OfType<YamlScalarNode>().Select(k => k.Value ?? string.Empty).ToList())
        {
            if (!known.Contains(key))
            {
                map.Error(key, key switch
                {
                    "targetRef" or "targetRefs" => "is not supported; select workloads with selector.matchLabels",
                    "fromCookies" or "outputPayloadToHeader" or "timeout" => "is not supported",
                    _ => $"unknown field (known: {string.Join(", ", known)}); refused rather than ignored, since ignoring it could accept tokens nobody meant to",
                });
            }
        }
    }

    private static bool IsHeaderName(string name) =>
        name.Length > 0 && name.All(c => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal));
}
