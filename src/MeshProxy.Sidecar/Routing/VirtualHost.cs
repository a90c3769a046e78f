using MeshProxy.Config.Resources;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.WebUtilities;

namespace MeshProxy.Sidecar.Routing;

/// <summary>
/// One port of one service as the local app calls it: the HTTP route rules for it (in order) and the
/// cluster that serves it when no rule is configured.
/// </summary>
internal sealed class VirtualHost(string serviceName, string serviceNamespace, int port, Cluster defaultCluster, IReadOnlyList<RouteRule> rules)
{
    public string ServiceName { get; } = serviceName;

    public string ServiceNamespace { get; } = serviceNamespace;

    public int Port { get; } = port;

    public Cluster DefaultCluster { get; } = defaultCluster;

    public IReadOnlyList<RouteRule> Rules { get; } = rules;

    /// <summary>"name.namespace.svc.cluster.local", Istio's destination_service.</summary>
    public string ServiceFqdn { get; } = $"{serviceName}.{serviceNamespace}.svc.cluster.local";

    /// <summary>The first rule that matches, the default route when there are no rules, or null: no route.</summary>
    public RouteRule? Match(HttpRequest request)
    {
        var rules = Rules;
        if (rules.Count == 0)
        {
            return null;
        }

        for (var i = 0; i < rules.Count; i++)
        {
            if (rules[i].Matches(request))
            {
                return rules[i];
            }
        }

        return null;
    }
}

/// <summary>A destination of a rule with its share of the traffic.</summary>
internal sealed record WeightedCluster(Cluster Cluster, int Weight);

/// <summary>One compiled HTTP route rule; a redirect rule has no destinations and always has <see cref="Filters"/>.</summary>
internal sealed class RouteRule(
    string name, IReadOnlyList<HttpMatch> matches, IReadOnlyList<WeightedCluster> destinations, TimeSpan? timeout, RetryPolicySpec? retries, RouteFilters? filters = null,
    RouteMirror? mirror = null)
{
    private readonly WeightedCluster[] _destinations = [.. destinations];
    private readonly int _totalWeight = destinations.Sum(d => d.Weight);

    public string Name { get; } = name;

    public IReadOnlyList<HttpMatch> MatchConditions { get; } = matches;

    public IReadOnlyList<WeightedCluster> Destinations => _destinations;

    public TimeSpan? Timeout { get; } = timeout;

    public RetryPolicySpec? Retries { get; } = retries;

    /// <summary>Header changes, rewrite or redirect; null when the rule has none.</summary>
    public RouteFilters? Filters { get; } = filters;

    /// <summary>Where a copy of the rule's requests goes (Mirroring/RequestMirror.cs); null when the rule mirrors nothing.</summary>
    public RouteMirror? Mirror { get; } = mirror;

    /// <summary>The retries compiled for the attempt loop (Istio's default when the rule sets none).</summary>
    public RetryPolicy RetryPolicy { get; } = RetryPolicy.From(retries);

    public bool Matches(HttpRequest request)
    {
        if (MatchConditions.Count == 0)
        {
            return true;
        }

        for (var i = 0; i < MatchConditions.Count; i++)
        {
            if (MatchOne(MatchConditions[i], request))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The first of the rule's conditions that <paramref name="request"/> satisfies (null when it has none): what a prefix rewrite replaces.</summary>
    public HttpMatch? MatchedCondition(HttpRequest request)
    {
        for (var i = 0; i < MatchConditions.Count; i++)
        {
            if (MatchOne(MatchConditions[i], request))
            {
                return MatchConditions[i];
            }
        }

        return null;
    }

    /// <summary>A weighted random choice; with one destination no random number is drawn.</summary>
    public Cluster PickCluster()
    {
        if (_destinations.Length == 1)
        {
            return _destinations[0].Cluster;
        }

        var ticket = Random.Shared.Next(_totalWeight);
        foreach (var d in _destinations)
        {
            ticket -= d.Weight;
            if (ticket < 0)
            {
                return d.Cluster;
            }
        }

        return _destinations[^1].Cluster;
    }

    private static bool MatchOne(HttpMatch match, HttpRequest request)
    {
        if (match.Uri is { } uri && !uri.IsMatch(request.Path.Value))
        {
            return false;
        }

        if (match.Method is { } method && !method.IsMatch(request.Method))
        {
            return false;
        }

        foreach (var header in match.Headers)
        {
            if (!request.Headers.TryGetValue(header.Name, out var values))
            {
                return false;
            }

            var any = false;
            foreach (var value in values)
            {
                if (value is not null && header.Value.IsMatch(value))
                {
                    any = true;
                    break;
                }
            }

            if (!any)
            {
                return false;
            }
        }

        return match.QueryParams.Count == 0 || QueryMatches(match.QueryParams, request.QueryString.Value);
    }

    /// <summary>
    /// Every parameter present with its first value (decoded) matching; names compared exactly, as the Gateway API
    /// says (the request's query collection would compare them ignoring case). Read without building that collection.
    /// </summary>
    private static bool QueryMatches(IReadOnlyList<QueryParamMatch> conditions, string? query)
    {
        foreach (var condition in conditions)
        {
            var found = false;
            foreach (var pair in new QueryStringEnumerable(query))
            {
                if (pair.DecodeName().Span.SequenceEqual(condition.Name))
                {
                    found = condition.Value.IsMatch(pair.DecodeValue().Span);
                    break;
                }
            }

            if (!found)
            {
                return false;
            }
        }

        return true;
    }
}
