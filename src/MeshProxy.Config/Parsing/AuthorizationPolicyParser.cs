using System.Globalization;
using MeshProxy.Config.Resources;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.Config.Parsing;

/// <summary>
/// Reads an AuthorizationPolicy. Unlike other kinds, an unknown field inside the policy is an error and
/// not a warning: a constraint the proxy silently ignored would widen what a rule matches, which opens
/// an ALLOW policy and closes a DENY policy on traffic nobody meant.
/// </summary>
internal static class AuthorizationPolicyParser
{
    private static readonly IReadOnlyList<string> Actions = ["ALLOW", "DENY", "AUDIT", "CUSTOM"];

    private static readonly string[] StandardMethods = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

    private static readonly string[] SpecFields = ["selector", "action", "provider", "rules", "dryRun"];
    private static readonly string[] RuleFields = ["from", "to", "when"];
    private static readonly string[] SourceFields = ["principals", "notPrincipals", "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks", "requestPrincipals", "notRequestPrincipals"];
    private static readonly string[] OperationFields = ["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"];
    private static readonly string[] ConditionFields = ["key", "values", "notValues"];

    public static Resource? Parse(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        RejectUnknown(spec, SpecFields);

        var selector = spec.Map("selector");
        var matchLabels = selector?.StringMap("matchLabels") ?? new Dictionary<string, string>();
        if (selector is not null)
        {
            RejectUnknown(selector, ["matchLabels"]);
        }

        var action = spec.Enum("action", Actions) switch
        {
            "DENY" => AuthorizationAction.Deny,
            "AUDIT" => AuthorizationAction.Audit,
            "CUSTOM" => AuthorizationAction.Custom,
            _ => AuthorizationAction.Allow,
        };

        var provider = Provider(spec, action);
        var dryRun = (spec.Bool("dryRun") ?? false) | DryRunAnnotation(meta, source, spec);
        if (dryRun && action is AuthorizationAction.Audit or AuthorizationAction.Custom)
        {
            spec.Error("dryRun", "dry run applies to ALLOW and DENY policies; an AUDIT policy never decides, and a CUSTOM policy's decision is the provider's");
        }

        var rules = new List<AuthorizationRule>();
        foreach (var rule in spec.Maps("rules"))
        {
            RejectUnknown(rule, RuleFields);
            var from = NonEmptyMaps(rule, "from").Select(ParseSource).OfType<AuthorizationSource>().ToList();
            var to = NonEmptyMaps(rule, "to").Select(t => ParseOperation(t, action)).OfType<AuthorizationOperation>().ToList();
            var when = NonEmptyMaps(rule, "when").Select(ParseCondition).OfType<AuthorizationCondition>().ToList();
            rules.Add(new AuthorizationRule(from, to, when));
        }

        return new AuthorizationPolicyResource(meta, source, new AuthorizationPolicySpec(matchLabels, action, rules, dryRun) { Provider = provider });
    }

    /// <summary>provider.name: required with CUSTOM (which provider to ask), refused with any other action.</summary>
    private static string? Provider(YamlMap spec, AuthorizationAction action)
    {
        if (action != AuthorizationAction.Custom)
        {
            if (spec.Has("provider"))
            {
                spec.Error("provider", "is only for action CUSTOM");
            }

            return null;
        }

        var provider = spec.Map("provider", required: true);
        if (provider is null)
        {
            return null;
        }

        RejectUnknown(provider, ["name"]);
        return provider.String("name", required: true);
    }

    private static bool DryRunAnnotation(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        if (!meta.Annotations.TryGetValue(AuthorizationPolicyResource.DryRunAnnotation, out var text))
        {
            return false;
        }

        if (bool.TryParse(text, out var value))
        {
            return value;
        }

        spec.Sink.Errors.Add(new ConfigDiagnostic(source.File, source.Line, $"metadata.annotations.{AuthorizationPolicyResource.DryRunAnnotation}",
            $"'{text}' must be \"true\" or \"false\""));
        return false;
    }

    private static AuthorizationSource? ParseSource(YamlMap from)
    {
        RejectUnknown(from, ["source"]);
        var source = from.Map("source", required: true);
        if (source is null)
        {
            return null;
        }

        RejectUnknown(source, SourceFields);
        var result = new AuthorizationSource(
            Patterns(source, "principals", StripSpiffeScheme),
            Patterns(source, "notPrincipals", StripSpiffeScheme),
            Patterns(source, "namespaces"),
            Patterns(source, "notNamespaces"),
            IpBlocks(source, "ipBlocks"),
            IpBlocks(source, "notIpBlocks"),
            Patterns(source, "requestPrincipals"),
            Patterns(source, "notRequestPrincipals"));
        RequireSomething(source, SourceFields, "source");
        return result;
    }

    private static AuthorizationOperation? ParseOperation(YamlMap to, AuthorizationAction action)
    {
        RejectUnknown(to, ["operation"]);
        var operation = to.Map("operation", required: true);
        if (operation is null)
        {
            return null;
        }

        RejectUnknown(operation, OperationFields);
        var paths = Paths(operation, "paths");
        var result = new AuthorizationOperation(
            Hosts(operation, "hosts"),
            Hosts(operation, "notHosts"),
            Ports(operation, "ports"),
            Ports(operation, "notPorts"),
            Methods(operation, "methods"),
            Methods(operation, "notMethods"),
            paths,
            Paths(operation, "notPaths"));
        RequireSomething(operation, OperationFields, "operation");

        // Istio's "/admin" does not match "/admin/" or "/admin/x"; a DENY meant to fence off a
        // subtree that lists only the exact path is the classic hole, so point it out.
        if (action == AuthorizationAction.Deny)
        {
            foreach (var path in paths)
            {
                if (path.StartsWith('/') && !path.EndsWith('*') && path != "/" && !paths.Contains(path.TrimEnd('/') + "/*"))
                {
                    operation.Sink.Warning(operation.Find("paths"), operation.Child("paths"),
                        $"DENY on exact path '{path}' does not cover '{path.TrimEnd('/')}/' or anything under it; add '{path.TrimEnd('/')}/*' if that is meant");
                }
            }
        }

        return result;
    }

    private static AuthorizationCondition? ParseCondition(YamlMap when)
    {
        RejectUnknown(when, ConditionFields);
        var key = when.String("key", required: true);
        if (key is null)
        {
            return null;
        }

        Func<YamlMap, string, IReadOnlyList<string>> read;
        if (key.StartsWith(AuthorizationConditionKeys.HeaderPrefix, StringComparison.Ordinal) && key.EndsWith(']'))
        {
            var name = key[AuthorizationConditionKeys.HeaderPrefix.Length..^1];
            if (name.Length == 0 || !name.All(IsTokenChar))
            {
                when.Error("key", $"'{name}' is not a header name");
                return null;
            }

            read = (m, k) => Patterns(m, k);
        }
        else
        {
            switch (key)
            {
                case AuthorizationConditionKeys.SourceIp:
                    read = IpBlocks;
                    break;
                case AuthorizationConditionKeys.DestinationPort:
                    read = (m, k) => Ports(m, k).Select(p => p.ToString(CultureInfo.InvariantCulture)).ToList();
                    break;
                case AuthorizationConditionKeys.SourcePrincipal:
                    read = (m, k) => Patterns(m, k, StripSpiffeScheme);
                    break;
                case AuthorizationConditionKeys.SourceNamespace or AuthorizationConditionKeys.ConnectionSni
                    or AuthorizationConditionKeys.RequestPrincipal or AuthorizationConditionKeys.RequestAudiences or AuthorizationConditionKeys.RequestPresenter:
                    read = (m, k) => Patterns(m, k);
                    break;
                case var claims when claims.StartsWith(AuthorizationConditionKeys.ClaimsPrefix, StringComparison.Ordinal):
                    if (AuthorizationConditionKeys.ParseClaimPath(claims) is null)
                    {
                        when.Error("key", $"'{key}' is not a claim key: write request.auth.claims[name], or request.auth.claims[outer][inner] for a nested claim");
                        return null;
                    }

                    read = (m, k) => Patterns(m, k);
                    break;
                case "remote.ip":
                    when.Error("key", "remote.ip is not supported: the sidecar does not trust X-Forwarded-For or PROXY protocol; use source.ip");
                    return null;
                default:
                    when.Error("key", $"unknown key '{key}' (supported: {string.Join(", ", AuthorizationConditionKeys.Supported)})");
                    return null;
            }
        }

        var values = read(when, "values");
        var notValues = read(when, "notValues");
        if (RawCount(when, "values") == 0 && RawCount(when, "notValues") == 0)
        {
            when.Sink.Error(when.Node, when.Path, "needs values or notValues");
        }

        return new AuthorizationCondition(key, values, notValues);
    }

    /// <summary>
    /// from/to/when absent means "any"; present but empty is refused, because Istio refuses it and
    /// because an operator who wrote the key probably meant a constraint.
    /// </summary>
    private static IReadOnlyList<YamlMap> NonEmptyMaps(YamlMap rule, string key)
    {
        if (rule.Find(key) is YamlSequenceNode { Children.Count: 0 })
        {
            rule.Error(key, "must not be empty (leave it out to match any)");
        }

        return rule.Maps(key);
    }

    /// <summary>Istio's string matches: exact, "prefix*", "*suffix", or "*" (present and non-empty).</summary>
    private static List<string> Patterns(YamlMap map, string key, Func<string, string>? normalize = null)
    {
        var values = map.Strings(key);
        var result = new List<string>(values.Count);
        for (var i = 0; i < values.Count; i++)
        {
            var value = normalize is null ? values[i] : normalize(values[i]);
            var stars = value.Count(c => c == '*');
            if (stars > 1 || (stars == 1 && value[0] != '*' && value[^1] != '*'))
            {
                ItemError(map, key, i, $"'{values[i]}': '*' may only stand alone, at the start (suffix match) or at the end (prefix match)");
            }

            result.Add(value);
        }

        return result;
    }

    private static List<string> Hosts(YamlMap map, string key)
    {
        var hosts = Patterns(map, key);
        for (var i = 0; i < hosts.Count; i++)
        {
            if (hosts[i].Contains(':', StringComparison.Ordinal))
            {
                ItemError(map, key, i, $"'{hosts[i]}': hosts are matched without the port; use ports/notPorts for the port");
            }
        }

        return hosts;
    }

    private static List<string> Paths(YamlMap map, string key)
    {
        var paths = Patterns(map, key);
        for (var i = 0; i < paths.Count; i++)
        {
            var path = paths[i];
            if (path.StartsWith('*'))
            {
                continue;
            }

            if (!path.StartsWith('/'))
            {
                ItemError(map, key, i, $"'{path}' must start with '/' (or be '*' or '*suffix')");
            }
            else if (path.IndexOfAny(['{', '}']) >= 0)
            {
                ItemError(map, key, i, $"'{path}': path templates are not supported");
            }
            else if (!IsNormalizedPath(path.TrimEnd('*')))
            {
                ItemError(map, key, i, $"'{path}' is not a normalized path (no '//', '.' or '..' segments, '%', '\\', '?' or '#'); requests are normalized before matching, so it could never match");
            }
        }

        return paths;
    }

    private static bool IsNormalizedPath(string path)
    {
        if (path.Contains("//", StringComparison.Ordinal) || path.IndexOfAny(['%', '\\', '?', '#']) >= 0)
        {
            return false;
        }

        foreach (var segment in path.Split('/'))
        {
            if (segment is "." or "..")
            {
                return false;
            }
        }

        return true;
    }

    private static IReadOnlyList<string> Methods(YamlMap map, string key)
    {
        var methods = map.Strings(key);
        for (var i = 0; i < methods.Count; i++)
        {
            var method = methods[i];
            if (method.Contains('*', StringComparison.Ordinal))
            {
                ItemError(map, key, i, $"'{method}': methods match exactly; leave methods out to match any");
            }
            else if (Array.Find(StandardMethods, m => string.Equals(m, method, StringComparison.OrdinalIgnoreCase)) is { } standard && standard != method)
            {
                ItemError(map, key, i, $"'{method}': methods are case-sensitive and the sidecar refuses '{method}' requests; write '{standard}'");
            }
            else if (!method.All(IsTokenChar))
            {
                ItemError(map, key, i, $"'{method}' is not an HTTP method token");
            }
        }

        return methods;
    }

    private static List<int> Ports(YamlMap map, string key)
    {
        var texts = map.Strings(key);
        var ports = new List<int>(texts.Count);
        for (var i = 0; i < texts.Count; i++)
        {
            if (int.TryParse(texts[i], NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 1 and <= 65535)
            {
                ports.Add(port);
            }
            else
            {
                ItemError(map, key, i, $"'{texts[i]}' is not a port (1-65535)");
            }
        }

        return ports;
    }

    private static IReadOnlyList<string> IpBlocks(YamlMap map, string key)
    {
        var blocks = map.Strings(key);
        for (var i = 0; i < blocks.Count; i++)
        {
            if (!Cidrs.TryParse(blocks[i], out _))
            {
                ItemError(map, key, i, $"'{blocks[i]}' is not an IP address or CIDR block (such as 10.0.0.0/8 or fd00::/8)");
            }
        }

        return blocks;
    }

    /// <summary>Istio writes principals without the scheme (cluster.local/ns/a/sa/b); accept both spellings.</summary>
    private static string StripSpiffeScheme(string principal) =>
        principal.StartsWith("spiffe://", StringComparison.Ordinal) ? principal["spiffe://".Length..] : principal;

    private static void RequireSomething(YamlMap map, string[] fields, string what)
    {
        if (!fields.Any(map.Has))
        {
            map.Sink.Error(map.Node, map.Path, $"{what} must set at least one of {string.Join(", ", fields)}");
        }
    }

    private static void RejectUnknown(YamlMap map, string[] known)
    {
        foreach (var key in ((YamlMappingNode)map.Node).Children.Keys.OfType<YamlScalarNode>().Select(k => k.Value ?? string.Empty).ToList())
        {
            if (!known.Contains(key))
            {
                var reason = key switch
                {
                    "remoteIpBlocks" or "notRemoteIpBlocks" => "is not supported: the sidecar does not trust X-Forwarded-For or PROXY protocol; use ipBlocks",
                    "targetRef" or "targetRefs" => "is not supported; select workloads with selector.matchLabels",
                    _ => $"unknown field (known: {string.Join(", ", known)}); refused rather than ignored, since ignoring it would change what the policy matches",
                };
                map.Error(key, reason);
            }
        }
    }

    private static int RawCount(YamlMap map, string key) => map.Find(key) is YamlSequenceNode sequence ? sequence.Children.Count : 0;

    private static void ItemError(YamlMap map, string key, int index, string reason)
    {
        var node = map.Find(key);
        var item = node is YamlSequenceNode sequence && index < sequence.Children.Count ? sequence.Children[index] : node;
        map.Sink.Error(item, $"{map.Child(key)}[{index}]", reason);
    }

    private static bool IsTokenChar(char c) =>
        char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal);
}
