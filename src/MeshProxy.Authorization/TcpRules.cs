using MeshProxy.Config.Resources;

namespace MeshProxy.Authorization;

/// <summary>
/// Istio's reading of a rule for a TCP connection, which has no method, path, host, header or JWT: the HTTP-only
/// fields (from.requestPrincipals / notRequestPrincipals; to.hosts / notHosts, methods / notMethods, paths /
/// notPaths; `when` keys under request.*) cannot be evaluated. An ALLOW rule that uses any of them never matches a
/// connection (so the connection is allowed only by another rule: failing closed). A DENY (or AUDIT) rule is read
/// with those fields left out, so it matches on what remains (principals, namespaces, ipBlocks, ports, the source and
/// destination conditions): a DENY meant for some requests to a port denies every connection to it, failing closed
/// too. A rule left with nothing matches every connection, as an empty rule does.
/// </summary>
internal static class TcpRules
{
    /// <summary>The rule as a TCP connection is matched against it; null when it never matches one.</summary>
    public static AuthorizationRule? ForTcp(AuthorizationRule rule, AuthorizationAction action)
    {
        if (!HasHttpOnlyFields(rule))
        {
            return rule;
        }

        if (action == AuthorizationAction.Allow)
        {
            return null;
        }

        return new AuthorizationRule(
            [.. rule.From.Select(s => s with { RequestPrincipals = [], NotRequestPrincipals = [] })],
            [.. rule.To.Select(o => o with { Hosts = [], NotHosts = [], Methods = [], NotMethods = [], Paths = [], NotPaths = [] })],
            [.. rule.When.Where(c => !IsHttpOnly(c))]);
    }

    public static bool HasHttpOnlyFields(AuthorizationRule rule) =>
        rule.From.Any(s => s.RequestPrincipals.Count + s.NotRequestPrincipals.Count > 0) ||
        rule.To.Any(o => o.Hosts.Count + o.NotHosts.Count + o.Methods.Count + o.NotMethods.Count + o.Paths.Count + o.NotPaths.Count > 0) ||
        rule.When.Any(IsHttpOnly);

    /// <summary>request.headers[...], request.auth.*: read from the HTTP request or its JWT.</summary>
    private static bool IsHttpOnly(AuthorizationCondition condition) => condition.Key.StartsWith("request.", StringComparison.Ordinal);
}
