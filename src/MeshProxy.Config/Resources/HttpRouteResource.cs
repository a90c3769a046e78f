using System.Text.RegularExpressions;

namespace MeshProxy.Config.Resources;

/// <summary>
/// HTTP routing for a set of hosts, in the shape of Istio's VirtualService: ordered rules, each with
/// matches and weighted destinations. The first rule that matches wins.
/// </summary>
public sealed record HttpRouteResource(ObjectMeta Metadata, SourceLocation Source, HttpRouteSpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "HttpRoute";

    public override string Kind => KindName;
}

public sealed record HttpRouteSpec(IReadOnlyList<string> Hosts, IReadOnlyList<HttpRouteRule> Http);

public sealed record HttpRouteRule(
    string Name,
    IReadOnlyList<HttpMatch> Match,
    IReadOnlyList<HttpRouteDestination> Route,
    TimeSpan? Timeout,
    RetryPolicySpec? Retries);

/// <summary>All conditions of one match must hold; a rule matches when any of its matches does (or it has none).</summary>
public sealed record HttpMatch(StringMatch? Uri, StringMatch? Method, IReadOnlyList<HeaderMatch> Headers);

public sealed record HeaderMatch(string Name, StringMatch Value);

public enum StringMatchKind
{
    Exact,
    Prefix,
    Regex,
}

/// <summary>Istio's StringMatch: exactly one of exact, prefix or regex.</summary>
public sealed record StringMatch(StringMatchKind Kind, string Value)
{
    private readonly Regex? _regex = Kind == StringMatchKind.Regex
        ? new Regex($"^(?:{Value})$", RegexOptions.NonBacktracking | RegexOptions.CultureInvariant)
        : null;

    public bool IsMatch(ReadOnlySpan<char> input) => Kind switch
    {
        StringMatchKind.Exact => input.SequenceEqual(Value),
        StringMatchKind.Prefix => input.StartsWith(Value, StringComparison.Ordinal),
        _ => _regex!.IsMatch(input),
    };
}

public sealed record HttpRouteDestination(string Host, int? Port, int Weight);

/// <summary>Istio's HTTPRetry. Enforced by the resilience layer.</summary>
public sealed record RetryPolicySpec(int Attempts, TimeSpan? PerTryTimeout, IReadOnlyList<string> RetryOn);
