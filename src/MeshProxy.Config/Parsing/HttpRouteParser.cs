using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Parsing;

internal static class HttpRouteParser
{
    private static readonly IReadOnlyList<string> RetryConditions =
    [
        "5xx", "gateway-error", "reset", "connect-failure", "refused-stream", "retriable-4xx",
        "retriable-status-codes", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
    ];

    public static Resource? Parse(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        var hosts = spec.Strings("hosts", required: true);
        var rules = new List<HttpRouteRule>();
        foreach (var rule in spec.Maps("http", required: true))
        {
            var matches = rule.Maps("match").Select(ParseMatch).ToList();
            var redirect = ParseRedirect(rule.Map("redirect"));
            var destinations = new List<HttpRouteDestination>();
            foreach (var r in rule.Maps("route", required: redirect is null))
            {
                var destination = r.Map("destination", required: true);
                var host = destination?.String("host", required: true);
                var port = destination?.Map("port")?.Port("number");
                destination?.Finish();
                destinations.Add(new HttpRouteDestination(host ?? string.Empty, port, (int)(r.Integer("weight", 0, 100) ?? 0)));
                r.Finish();
            }

            // Istio's rule: one destination may omit its weight; several must add up to 100.
            if (destinations.Count == 1 && destinations[0].Weight == 0)
            {
                destinations[0] = destinations[0] with { Weight = 100 };
            }
            else if (destinations.Count > 1 && destinations.Sum(d => d.Weight) != 100)
            {
                rule.Error("route", $"weights add up to {destinations.Sum(d => d.Weight)}, they must add up to 100");
            }

            var retries = rule.Map("retries");
            RetryPolicySpec? retryPolicy = null;
            if (retries is not null)
            {
                var retryOn = (retries.String("retryOn") ?? "connect-failure,refused-stream,unavailable,cancelled")
                    .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                foreach (var condition in retryOn)
                {
                    if (!RetryConditions.Contains(condition) && !int.TryParse(condition, out _))
                    {
                        retries.Error("retryOn", $"'{condition}' is not a retry condition ({string.Join(", ", RetryConditions)}, or a status code)");
                    }
                }

                retryPolicy = new RetryPolicySpec(
                    (int)(retries.Integer("attempts", 0, 10, required: true) ?? 0),
                    retries.Duration("perTryTimeout", TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1)),
                    retryOn);
                retries.Finish();
            }

            var headerMap = rule.Map("headers");
            var headers = headerMap is null ? null : new HeaderOperations(ParseMutation(headerMap.Map("request")), ParseMutation(headerMap.Map("response")));
            headerMap?.Finish();
            var rewrite = ParseRewrite(rule.Map("rewrite"));

            // Istio's rule: a rule forwards (route) or answers a redirect, never both; a redirect is not rewritten.
            if (redirect is not null && destinations.Count > 0)
            {
                rule.Error("redirect", "a rule has either route or redirect, not both");
            }

            if (redirect is not null && rewrite is not null)
            {
                rule.Error("rewrite", "a rule with a redirect is not rewritten (set the redirect's path and authority instead)");
            }

            var mirror = ParseMirror(rule);
            if (redirect is not null && mirror is not null)
            {
                rule.Error("mirror", "a rule with a redirect forwards nothing to mirror");
            }

            rules.Add(new HttpRouteRule(
                rule.String("name") ?? $"rule-{rules.Count}",
                matches,
                destinations,
                rule.Duration("timeout", TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(24)),
                retryPolicy,
                headers is { Request: null, Response: null } ? null : headers,
                rewrite,
                redirect,
                mirror));
            rule.Finish();
        }

        return new HttpRouteResource(meta, source, new HttpRouteSpec(hosts, rules));
    }

    /// <summary>Istio's mirror (a destination without weight) and mirrorPercentage.value (0-100, default 100).</summary>
    private static HttpMirror? ParseMirror(YamlMap rule)
    {
        var percentage = rule.Map("mirrorPercentage");
        var value = percentage?.Number("value", 0, 100);
        percentage?.Finish();
        var mirror = rule.Map("mirror");
        if (mirror is null)
        {
            if (percentage is not null)
            {
                rule.Sink.Warning(rule.Find("mirrorPercentage"), rule.Child("mirrorPercentage"), "ignored: the rule has no mirror");
            }

            return null;
        }

        var host = mirror.String("host", required: true);
        var port = mirror.Map("port")?.Port("number");
        mirror.Finish();
        return host is null ? null : new HttpMirror(host, port, value ?? 100);
    }

    private static HttpMatch ParseMatch(YamlMap match)
    {
        var uri = ParseStringMatch(match.Map("uri"), StringMatchKind.PathPrefix);
        var method = ParseStringMatch(match.Map("method"));
        var headers = match.NamedMaps("headers")
            .Select(h => ParseStringMatch(h.Value) is { } v ? new HeaderMatch(h.Name.ToLowerInvariant(), v) : null)
            .OfType<HeaderMatch>()
            .ToList();

        // Istio's queryParams: exact or regex only (as in Istio: no prefix); anything else is refused, not ignored.
        var queryParams = new List<QueryParamMatch>();
        foreach (var (name, value) in match.NamedMaps("queryParams"))
        {
            var exact = value.String("exact");
            var regex = value.String("regex");
            value.RejectUnknown();
            if ((exact is null) == (regex is null))
            {
                value.Sink.Error(value.Node, value.Path, "must have exactly one of exact or regex");
                continue;
            }

            try
            {
                queryParams.Add(new QueryParamMatch(name, exact is not null ? new StringMatch(StringMatchKind.Exact, exact) : new StringMatch(StringMatchKind.Regex, regex!)));
            }
            catch (ArgumentException ex)
            {
                value.Error("regex", $"not a valid regular expression: {ex.Message}");
            }
        }

        match.Finish();
        return new HttpMatch(uri, method, headers, queryParams);
    }

    private static HeaderMutation? ParseMutation(YamlMap? map)
    {
        if (map is null)
        {
            return null;
        }

        var set = HeaderValues(map, "set");
        var add = HeaderValues(map, "add");
        var remove = new List<string>();
        var names = map.Strings("remove");
        for (var i = 0; i < names.Count; i++)
        {
            if (HeaderNameProblem(names[i]) is { } problem)
            {
                map.Sink.Error(map.Find("remove"), $"{map.Child("remove")}[{i}]", problem);
            }
            else
            {
                remove.Add(names[i].ToLowerInvariant());
            }
        }

        map.Finish();
        return new HeaderMutation(set, add, remove);
    }

    private static List<KeyValuePair<string, string>> HeaderValues(YamlMap map, string key)
    {
        var result = new List<KeyValuePair<string, string>>();
        foreach (var (name, value) in map.StringMap(key))
        {
            if (HeaderNameProblem(name) is { } problem)
            {
                map.Sink.Error(map.Find(key), $"{map.Child(key)}.{name}", problem);
            }
            else if (value.AsSpan().IndexOfAny('\r', '\n', '\0') >= 0)
            {
                map.Sink.Error(map.Find(key), $"{map.Child(key)}.{name}", "a header value must not contain CR, LF or NUL");
            }
            else
            {
                result.Add(new(name.ToLowerInvariant(), value));
            }
        }

        return result;
    }

    /// <summary>Why <paramref name="name"/> cannot be changed by a route, or null: an RFC 9110 token, and not a header the proxy itself owns.</summary>
    private static string? HeaderNameProblem(string name)
    {
        if (name.Length == 0 || name.AsSpan().IndexOfAnyExcept(HeaderTokenChars) >= 0)
        {
            return $"'{name}' is not a header name (an RFC 9110 token)";
        }

        return FramingHeaders.Contains(name.ToLowerInvariant())
            ? $"'{name}' is a connection or framing header the proxy owns; it cannot be changed by a route{(name.Equals("host", StringComparison.OrdinalIgnoreCase) ? " (use rewrite.authority)" : string.Empty)}"
            : null;
    }

    private static readonly System.Buffers.SearchValues<char> HeaderTokenChars =
        System.Buffers.SearchValues.Create("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");

    private static readonly HashSet<string> FramingHeaders =
        ["host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "upgrade", "te"];

    private static PathRewrite? ParsePath(YamlMap map, PathRewriteKind istioUri)
    {
        var found = new List<PathRewrite>();
        foreach (var (key, kind) in new[] { ("uri", istioUri), ("replaceFullPath", PathRewriteKind.ReplaceFullPath), ("replacePrefixMatch", PathRewriteKind.ReplacePrefixMatch) })
        {
            if (map.String(key) is { } value)
            {
                if (!value.StartsWith('/') && !(kind != PathRewriteKind.ReplaceFullPath && value.Length == 0))
                {
                    map.Error(key, "a path must start with '/'");
                }
                else if (value.AsSpan().IndexOfAny('?', '#') >= 0 || value.AsSpan().IndexOfAny('\r', '\n', '\0') >= 0)
                {
                    map.Error(key, "a path must not contain '?', '#', CR, LF or NUL");
                }

                found.Add(new PathRewrite(kind, value));
            }
        }

        if (found.Count > 1)
        {
            map.Sink.Error(map.Node, map.Path, "set at most one of uri, replaceFullPath or replacePrefixMatch");
        }

        return found.Count == 1 ? found[0] : null;
    }

    private static HttpRewrite? ParseRewrite(YamlMap? map)
    {
        if (map is null)
        {
            return null;
        }

        var path = ParsePath(map, PathRewriteKind.Uri);
        var authority = Authority(map);
        map.Finish();
        if (path is null && authority is null)
        {
            map.Sink.Error(map.Node, map.Path, "set a path (uri, replaceFullPath or replacePrefixMatch) or authority");
        }

        return new HttpRewrite(path, authority);
    }

    private static readonly IReadOnlyList<string> RedirectCodes = ["301", "302", "303", "307", "308"];

    private static HttpRedirect? ParseRedirect(YamlMap? map)
    {
        if (map is null)
        {
            return null;
        }

        // Istio's redirect.uri replaces the whole path.
        var path = ParsePath(map, PathRewriteKind.ReplaceFullPath);
        var authority = Authority(map);
        var port = map.Port("port");
        var scheme = map.Enum("scheme", ["http", "https"]);
        var code = map.Integer("redirectCode", 301, 308);
        if (code is { } c && !RedirectCodes.Contains(c.ToString(System.Globalization.CultureInfo.InvariantCulture)))
        {
            map.Error("redirectCode", $"must be one of {string.Join(", ", RedirectCodes)}");
        }

        map.Finish();
        return new HttpRedirect(path, authority, port, scheme, (int)(code ?? 301));
    }

    private static readonly System.Buffers.SearchValues<char> NotInAuthority = System.Buffers.SearchValues.Create(" /?#@\r\n\0\t");

    /// <summary>A host name, optionally with a port, as it goes into Host or Location.</summary>
    private static string? Authority(YamlMap map)
    {
        var authority = map.String("authority");
        if (authority is not null && (authority.Length == 0 || authority.AsSpan().IndexOfAny(NotInAuthority) >= 0))
        {
            map.Error("authority", $"'{authority}' is not a host name");
            return null;
        }

        return authority;
    }

    internal static StringMatch? ParseStringMatch(YamlMap? map, StringMatchKind? extra = null)
    {
        if (map is null)
        {
            return null;
        }

        var found = new List<StringMatch>();
        var specified = 0;
        if (map.String("exact") is { } exact)
        {
            specified++;
            found.Add(new StringMatch(StringMatchKind.Exact, exact));
        }

        if (map.String("prefix") is { } prefix)
        {
            specified++;
            found.Add(new StringMatch(StringMatchKind.Prefix, prefix));
        }

        if (extra == StringMatchKind.PathPrefix && map.String("pathPrefix") is { } pathPrefix)
        {
            specified++;
            if (!pathPrefix.StartsWith('/'))
            {
                map.Error("pathPrefix", "a path prefix must start with '/'");
            }
            else
            {
                found.Add(new StringMatch(StringMatchKind.PathPrefix, pathPrefix));
            }
        }

        if (map.String("regex") is { } regex)
        {
            specified++;
            try
            {
                found.Add(new StringMatch(StringMatchKind.Regex, regex));
            }
            catch (ArgumentException ex)
            {
                map.Error("regex", $"not a valid regular expression: {ex.Message}");
            }
        }

        map.Finish();
        if (specified != 1)
        {
            map.Sink.Error(map.Node, map.Path, extra == StringMatchKind.PathPrefix ? "must have exactly one of exact, prefix, pathPrefix or regex" : "must have exactly one of exact, prefix or regex");
            return null;
        }

        return found.Count == 1 ? found[0] : null;
    }
}
