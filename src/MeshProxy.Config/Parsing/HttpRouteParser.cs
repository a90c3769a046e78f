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
            var destinations = new List<HttpRouteDestination>();
            foreach (var r in rule.Maps("route", required: true))
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

            rules.Add(new HttpRouteRule(
                rule.String("name") ?? $"rule-{rules.Count}",
                matches,
                destinations,
                rule.Duration("timeout", TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(24)),
                retryPolicy));
            rule.Finish();
        }

        return new HttpRouteResource(meta, source, new HttpRouteSpec(hosts, rules));
    }

    private static HttpMatch ParseMatch(YamlMap match)
    {
        var uri = ParseStringMatch(match.Map("uri"));
        var method = ParseStringMatch(match.Map("method"));
        var headers = match.NamedMaps("headers")
            .Select(h => ParseStringMatch(h.Value) is { } v ? new HeaderMatch(h.Name.ToLowerInvariant(), v) : null)
            .OfType<HeaderMatch>()
            .ToList();
        match.Finish();
        return new HttpMatch(uri, method, headers);
    }

    internal static StringMatch? ParseStringMatch(YamlMap? map)
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
            map.Sink.Error(map.Node, map.Path, "must have exactly one of exact, prefix or regex");
            return null;
        }

        return found.Count == 1 ? found[0] : null;
    }
}
