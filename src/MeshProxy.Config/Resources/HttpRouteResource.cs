using System.Text.RegularExpressions;

namespace MeshProxy.Config.Resources;

/// <summary>
/// HTTP routing for a set of hosts, in the shape of Istio's VirtualService: ordered rules, each with
/// matches and weighted destinations (or a redirect), optional header changes and a rewrite. The first rule that
/// matches wins.
/// </summary>
public sealed record HttpRouteResource(ObjectMeta Metadata, SourceLocation Source, HttpRouteSpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "HttpRoute";

    public override string Kind => KindName;
}

public sealed record HttpRouteSpec(IReadOnlyList<string> Hosts, IReadOnlyList<HttpRouteRule> Http);

/// <summary>
/// One rule. <see cref="Route"/> is empty exactly when <see cref="Redirect"/> is set (the sidecar answers the redirect
/// itself); <see cref="Headers"/> and <see cref="Rewrite"/> are null when the rule changes nothing; <see cref="Mirror"/>
/// is null when the rule's requests are not shadowed.
/// </summary>
public sealed record HttpRouteRule(
    string Name,
    IReadOnlyList<HttpMatch> Match,
    IReadOnlyList<HttpRouteDestination> Route,
    TimeSpan? Timeout,
    RetryPolicySpec? Retries,
    HeaderOperations? Headers = null,
    HttpRewrite? Rewrite = null,
    HttpRedirect? Redirect = null,
    HttpMirror? Mirror = null);

/// <summary>All conditions of one match must hold; a rule matches when any of its matches does (or it has none).</summary>
/// <param name="QueryParams">Istio's queryParams; empty when the match has none.</param>
public sealed record HttpMatch(StringMatch? Uri, StringMatch? Method, IReadOnlyList<HeaderMatch> Headers, IReadOnlyList<QueryParamMatch> QueryParams);

public sealed record HeaderMatch(string Name, StringMatch Value);

/// <summary>A query parameter (name compared exactly, case-sensitive) whose first value must satisfy <see cref="Value"/> (exact or regex).</summary>
public sealed record QueryParamMatch(string Name, StringMatch Value);

public enum StringMatchKind
{
    Exact,
    Prefix,
    Regex,

    /// <summary>
    /// Gateway API's PathPrefix, for uri only: whole path segments, a trailing '/' in the value ignored; /foo matches
    /// /foo, /foo/ and /foo/bar, not /foobar.
    /// </summary>
    PathPrefix,
}

/// <summary>Istio's StringMatch: exactly one of exact, prefix or regex (and, for uri, pathPrefix).</summary>
public sealed record StringMatch(StringMatchKind Kind, string Value)
{
    private readonly Regex? _regex = Kind == StringMatchKind.Regex
        ? new Regex($"^(?:{Value})$", RegexOptions.NonBacktracking | RegexOptions.CultureInvariant)
        : null;

    /// <summary>For <see cref="StringMatchKind.PathPrefix"/>: the value without its trailing slashes ("" for "/").</summary>
    public string Segments { get; } = Kind == StringMatchKind.PathPrefix ? Value.TrimEnd('/') : Value;

    public bool IsMatch(ReadOnlySpan<char> input) => Kind switch
    {
        StringMatchKind.Exact => input.SequenceEqual(Value),
        StringMatchKind.Prefix => input.StartsWith(Value, StringComparison.Ordinal),
        StringMatchKind.PathPrefix => input.StartsWith(Segments, StringComparison.Ordinal) && (input.Length == Segments.Length || input[Segments.Length] == '/'),
        _ => _regex!.IsMatch(input),
    };
}

/// <summary>Istio's Headers: changes to the request (before it is sent) and to the response (before the caller sees it).</summary>
public sealed record HeaderOperations(HeaderMutation? Request, HeaderMutation? Response);

/// <summary>
/// Applied in this order: <see cref="Set"/> (replaces every value), <see cref="Add"/> (appends a value), <see cref="Remove"/>.
/// Names are lowercased.
/// </summary>
public sealed record HeaderMutation(
    IReadOnlyList<KeyValuePair<string, string>> Set,
    IReadOnlyList<KeyValuePair<string, string>> Add,
    IReadOnlyList<string> Remove);

public enum PathRewriteKind
{
    /// <summary>The whole path becomes the value.</summary>
    ReplaceFullPath,

    /// <summary>The prefix the request matched becomes the value (Gateway API's ReplacePrefixMatch).</summary>
    ReplacePrefixMatch,

    /// <summary>Istio's rewrite.uri: the matched prefix when the rule matched by prefix, else the whole path.</summary>
    Uri,
}

public sealed record PathRewrite(PathRewriteKind Kind, string Value);

/// <summary>Istio's HTTPRewrite: the path and the authority (Host) the destination sees.</summary>
public sealed record HttpRewrite(PathRewrite? Path, string? Authority);

/// <summary>
/// Istio's HTTPRedirect, with the Gateway API's defaults: the request's scheme, host and path unless set; the port
/// of <see cref="Scheme"/> when that is set (80, 443), else the service port the request was sent to; a port that is
/// its scheme's default is left out of Location.
/// </summary>
public sealed record HttpRedirect(PathRewrite? Path, string? Authority, int? Port, string? Scheme, int StatusCode);

public sealed record HttpRouteDestination(string Host, int? Port, int Weight);

/// <summary>
/// Istio's mirror and mirrorPercentage (Gateway API's RequestMirror filter): a copy of <see cref="Percentage"/> percent
/// of the rule's requests goes to the Service at <see cref="Host"/> (port <see cref="Port"/>, or its only one), its
/// answer discarded. Not with a redirect (nothing is forwarded to copy).
/// </summary>
public sealed record HttpMirror(string Host, int? Port, double Percentage);

/// <summary>Istio's HTTPRetry. Enforced by the resilience layer.</summary>
public sealed record RetryPolicySpec(int Attempts, TimeSpan? PerTryTimeout, IReadOnlyList<string> RetryOn);
