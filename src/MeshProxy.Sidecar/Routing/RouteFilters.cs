using MeshProxy.Config.Resources;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Routing;

/// <summary>
/// What a rule changes on its way through: request and response headers, the path and Host the destination sees,
/// or a redirect the sidecar answers itself. Compiled once per snapshot and held by the <see cref="RouteRule"/>;
/// a rule that changes nothing has none, so its requests pay one null check and nothing else.
/// </summary>
internal sealed class RouteFilters
{
    private readonly HeaderMutation? _request;
    private readonly HeaderMutation? _response;
    private readonly HttpRewrite? _rewrite;
    private readonly HttpRedirect? _redirect;

    private RouteFilters(HttpRouteRule rule)
    {
        _request = rule.Headers?.Request;
        _response = rule.Headers?.Response;
        _rewrite = rule.Rewrite;
        _redirect = rule.Redirect;
    }

    /// <summary>The rule's filters, or null when it has none.</summary>
    public static RouteFilters? From(HttpRouteRule rule) =>
        rule.Headers is null && rule.Rewrite is null && rule.Redirect is null ? null : new RouteFilters(rule);

    /// <summary>
    /// Applies the rule's changes to <paramref name="context"/>'s request (the forwarder then sends what it holds) and
    /// arranges the response's; true when the request was answered here with a redirect and must not be forwarded.
    /// <paramref name="servicePort"/> is the port the request was sent to: a redirect's default port.
    /// </summary>
    public bool Apply(HttpContext context, RouteRule rule, int servicePort)
    {
        if (_response is { } response)
        {
            // OnStarting: after the upstream's headers are copied (or a local reply is written), before they are sent;
            // a response dropped for a retry never starts, so the changes are made once, on what the caller gets.
            context.Response.OnStarting(static state =>
            {
                var (ctx, mutation) = ((HttpContext, HeaderMutation))state;
                Mutate(ctx.Response.Headers, mutation);
                return Task.CompletedTask;
            }, (context, response));
        }

        var request = context.Request;
        if (_redirect is { } redirect)
        {
            var location = Location(request, redirect, redirect.Path is { } p ? Rewrite(request.Path.Value ?? "/", p, rule.MatchedCondition(request)?.Uri) : null, servicePort);
            context.Response.StatusCode = redirect.StatusCode;
            context.Response.Headers.Location = location;
            context.Response.ContentLength = 0;
            return true;
        }

        if (_request is { } mutation)
        {
            Mutate(request.Headers, mutation);
        }

        if (_rewrite is { } rewrite)
        {
            if (rewrite.Path is { } path)
            {
                request.Path = new PathString(Rewrite(request.Path.Value ?? "/", path, rule.MatchedCondition(request)?.Uri));
            }

            if (rewrite.Authority is { } authority)
            {
                request.Host = new HostString(authority);
            }
        }

        return false;
    }

    /// <summary>
    /// The path after <paramref name="rewrite"/>, given the uri condition the request matched (null: none).
    /// A prefix replacement on a Gateway API path prefix keeps the Gateway API's table (/foo -> /xyz: /foo/bar to
    /// /xyz/bar, /foo/ to /xyz/, /foo to /xyz; -> "" or "/": /foo/bar to /bar, /foo to /); on Istio's character
    /// prefix it is Envoy's prefix_rewrite (plain replacement); with no prefix matched the replacement is put in front.
    /// </summary>
    public static string Rewrite(string path, PathRewrite rewrite, StringMatch? matchedUri)
    {
        var value = rewrite.Value;
        switch (rewrite.Kind)
        {
            case PathRewriteKind.ReplaceFullPath:
            case PathRewriteKind.Uri when matchedUri?.Kind is not (StringMatchKind.Prefix or StringMatchKind.PathPrefix):
                return value.Length == 0 ? "/" : value;
        }

        if (matchedUri is { Kind: StringMatchKind.Prefix } prefix && path.StartsWith(prefix.Value, StringComparison.Ordinal))
        {
            var plain = string.Concat(value, path.AsSpan(prefix.Value.Length));
            return plain.Length == 0 ? "/" : plain;
        }

        // A whole-segment prefix: what follows it is empty or starts with '/', and the replacement's own trailing '/'
        // gives way to it, so no '//' is made and none is lost.
        var segments = matchedUri is { Kind: StringMatchKind.PathPrefix } pathPrefix && pathPrefix.IsMatch(path) ? pathPrefix.Segments.Length : 0;
        var result = string.Concat(value.AsSpan().TrimEnd('/'), path.AsSpan(segments));
        return result.Length == 0 ? "/" : result;
    }

    private static string Location(HttpRequest request, HttpRedirect redirect, string? path, int servicePort)
    {
        var scheme = redirect.Scheme ?? request.Scheme;
        var authority = redirect.Authority is { } a ? new HostString(a) : request.Host;
        var port = redirect.Port ?? authority.Port ?? (redirect.Scheme switch
        {
            "https" => 443,
            "http" => 80,
            _ => servicePort, // the Gateway API: the listener's port; in the mesh, the service port called
        });
        var defaultPort = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
        return string.Concat(
            scheme,
            "://",
            authority.Host,
            defaultPort ? string.Empty : ":" + port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            path is null ? request.Path.ToUriComponent() : new PathString(path).ToUriComponent(),
            request.QueryString.Value);
    }

    private static void Mutate(IHeaderDictionary headers, HeaderMutation mutation)
    {
        foreach (var (name, value) in mutation.Set)
        {
            headers[name] = value;
        }

        foreach (var (name, value) in mutation.Add)
        {
            headers.Append(name, value);
        }

        foreach (var name in mutation.Remove)
        {
            headers.Remove(name);
        }
    }
}
