using System.Net;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Authorization;

internal enum StringMatchForm
{
    Exact,
    Prefix,
    Suffix,
    Presence,
}

/// <summary>Istio's string match: "abc" exact, "abc*" prefix, "*abc" suffix, "*" any non-empty value.</summary>
internal sealed class StringMatcher
{
    private readonly StringMatchForm _form;
    private readonly string _value;
    private readonly StringComparison _comparison;

    private StringMatcher(StringMatchForm form, string value, StringComparison comparison)
    {
        _form = form;
        _value = value;
        _comparison = comparison;
    }

    public static StringMatcher Parse(string pattern, bool ignoreCase)
    {
        var comparison = ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        return pattern switch
        {
            "*" => new StringMatcher(StringMatchForm.Presence, string.Empty, comparison),
            ['*', .. var rest] => new StringMatcher(StringMatchForm.Suffix, rest, comparison),
            [.. var rest, '*'] => new StringMatcher(StringMatchForm.Prefix, rest, comparison),
            _ => new StringMatcher(StringMatchForm.Exact, pattern, comparison),
        };
    }

    public static StringMatcher[] ParseAll(IReadOnlyList<string> patterns, bool ignoreCase = false)
    {
        var result = new StringMatcher[patterns.Count];
        for (var i = 0; i < result.Length; i++)
        {
            result[i] = Parse(patterns[i], ignoreCase);
        }

        return result;
    }

    public bool Matches(ReadOnlySpan<char> input) => _form switch
    {
        StringMatchForm.Presence => !input.IsEmpty,
        StringMatchForm.Prefix => input.StartsWith(_value, _comparison),
        StringMatchForm.Suffix => input.EndsWith(_value, _comparison),
        _ => input.Equals(_value, _comparison),
    };

    public static bool Any(StringMatcher[] matchers, ReadOnlySpan<char> input)
    {
        foreach (var m in matchers)
        {
            if (m.Matches(input))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>An unset field (no matchers) does not constrain; otherwise the value must match one and no "not" entry.</summary>
    public static bool Holds(StringMatcher[] positive, StringMatcher[] negative, ReadOnlySpan<char> input) =>
        (positive.Length == 0 || Any(positive, input)) && (negative.Length == 0 || !Any(negative, input));
}

/// <summary>
/// A set of IP networks. An IPv4 block also matches the IPv4-mapped IPv6 form of its addresses
/// (::ffff:10.0.0.1), which is how a dual-stack listener reports IPv4 peers.
/// </summary>
internal sealed class IpMatcher
{
    private readonly IPNetwork[] _networks;

    public IpMatcher(IReadOnlyList<string> blocks)
    {
        var networks = new List<IPNetwork>(blocks.Count * 2);
        foreach (var block in blocks)
        {
            if (!Cidrs.TryParse(block, out var network))
            {
                throw new ArgumentException($"'{block}' is not an IP block", nameof(blocks));
            }

            networks.Add(network);
            if (network.BaseAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
            {
                networks.Add(new IPNetwork(network.BaseAddress.MapToIPv6(), network.PrefixLength + 96));
            }
        }

        _networks = [.. networks];
    }

    public bool IsEmpty => _networks.Length == 0;

    public bool Contains(IPAddress? address)
    {
        if (address is null)
        {
            return false;
        }

        foreach (var network in _networks)
        {
            if (network.Contains(address))
            {
                return true;
            }
        }

        return false;
    }

    public static bool Holds(IpMatcher positive, IpMatcher negative, IPAddress? address) =>
        (positive.IsEmpty || positive.Contains(address)) && (negative.IsEmpty || !negative.Contains(address));
}

internal sealed class SourceMatcher(AuthorizationSource source)
{
    private readonly StringMatcher[] _principals = StringMatcher.ParseAll(source.Principals);
    private readonly StringMatcher[] _notPrincipals = StringMatcher.ParseAll(source.NotPrincipals);
    private readonly StringMatcher[] _namespaces = StringMatcher.ParseAll(source.Namespaces);
    private readonly StringMatcher[] _notNamespaces = StringMatcher.ParseAll(source.NotNamespaces);
    private readonly IpMatcher _ipBlocks = new(source.IpBlocks);
    private readonly IpMatcher _notIpBlocks = new(source.NotIpBlocks);
    private readonly StringMatcher[] _requestPrincipals = StringMatcher.ParseAll(source.RequestPrincipals);
    private readonly StringMatcher[] _notRequestPrincipals = StringMatcher.ParseAll(source.NotRequestPrincipals);

    public bool Matches(in AuthorizationRequest request) =>
        StringMatcher.Holds(_principals, _notPrincipals, request.PrincipalName) &&
        StringMatcher.Holds(_requestPrincipals, _notRequestPrincipals, request.RequestPrincipal) &&
        StringMatcher.Holds(_namespaces, _notNamespaces, request.SourceNamespace) &&
        IpMatcher.Holds(_ipBlocks, _notIpBlocks, request.SourceIp);
}

internal sealed class OperationMatcher(AuthorizationOperation operation)
{
    // Host names are case-insensitive (RFC 4343); Istio learned this the hard way (GHSA-7774-7vr3-cc8j).
    private readonly StringMatcher[] _hosts = StringMatcher.ParseAll(operation.Hosts, ignoreCase: true);
    private readonly StringMatcher[] _notHosts = StringMatcher.ParseAll(operation.NotHosts, ignoreCase: true);
    private readonly int[] _ports = [.. operation.Ports];
    private readonly int[] _notPorts = [.. operation.NotPorts];
    private readonly string[] _methods = [.. operation.Methods];
    private readonly string[] _notMethods = [.. operation.NotMethods];
    private readonly StringMatcher[] _paths = StringMatcher.ParseAll(operation.Paths);
    private readonly StringMatcher[] _notPaths = StringMatcher.ParseAll(operation.NotPaths);

    public bool Matches(in AuthorizationRequest request) =>
        StringMatcher.Holds(_hosts, _notHosts, request.HostName) &&
        (_ports.Length == 0 || Array.IndexOf(_ports, request.Port) >= 0) &&
        (_notPorts.Length == 0 || Array.IndexOf(_notPorts, request.Port) < 0) &&
        (_methods.Length == 0 || Contains(_methods, request.Method)) &&
        (_notMethods.Length == 0 || !Contains(_notMethods, request.Method)) &&
        StringMatcher.Holds(_paths, _notPaths, request.Path);

    private static bool Contains(string[] methods, string method)
    {
        foreach (var m in methods)
        {
            if (string.Equals(m, method, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>One `when` entry, compiled for its key.</summary>
internal abstract class ConditionMatcher
{
    public abstract bool Holds(in AuthorizationRequest request);

    public static ConditionMatcher Compile(AuthorizationCondition condition, AuthorizationAction action)
    {
        if (condition.HeaderName is { } header)
        {
            return new HeaderCondition(header, condition, denyDirection: action != AuthorizationAction.Allow);
        }

        if (condition.ClaimPath is { } path)
        {
            return new ClaimCondition(path, condition);
        }

        return condition.Key switch
        {
            AuthorizationConditionKeys.SourceIp => new SourceIpCondition(condition),
            AuthorizationConditionKeys.DestinationPort => new DestinationPortCondition(condition),
            AuthorizationConditionKeys.SourcePrincipal => new SpanCondition(condition, SpanCondition.Field.Principal),
            AuthorizationConditionKeys.SourceNamespace => new SpanCondition(condition, SpanCondition.Field.Namespace),
            AuthorizationConditionKeys.ConnectionSni => new SpanCondition(condition, SpanCondition.Field.Sni),
            AuthorizationConditionKeys.RequestPrincipal => new SpanCondition(condition, SpanCondition.Field.RequestPrincipal),
            AuthorizationConditionKeys.RequestAudiences => new ClaimCondition(["aud"], condition),
            AuthorizationConditionKeys.RequestPresenter => new ClaimCondition(["azp"], condition),
            _ => throw new ArgumentException($"unsupported condition key '{condition.Key}'", nameof(condition)),
        };
    }
}

internal sealed class SpanCondition(AuthorizationCondition condition, SpanCondition.Field field) : ConditionMatcher
{
    internal enum Field
    {
        Principal,
        Namespace,
        Sni,
        RequestPrincipal,
    }

    private readonly StringMatcher[] _values = StringMatcher.ParseAll(condition.Values, ignoreCase: field == Field.Sni);
    private readonly StringMatcher[] _notValues = StringMatcher.ParseAll(condition.NotValues, ignoreCase: field == Field.Sni);

    public override bool Holds(in AuthorizationRequest request)
    {
        var value = field switch
        {
            Field.Principal => request.PrincipalName,
            Field.Namespace => request.SourceNamespace,
            Field.RequestPrincipal => request.RequestPrincipal,
            _ => request.Sni.AsSpan(),
        };
        return StringMatcher.Holds(_values, _notValues, value);
    }
}

/// <summary>
/// A claim of the validated JWT (request.auth.claims[...], and aud / azp for request.auth.audiences / presenter):
/// values holds when one value of the claim (one element, for a list claim) matches; notValues holds when none
/// does. Without a token, or without the claim, values never holds and notValues always does. The claims come
/// from a signed token, so unlike a header a caller cannot add a second copy to tip the reading.
/// </summary>
internal sealed class ClaimCondition(IReadOnlyList<string> path, AuthorizationCondition condition) : ConditionMatcher
{
    private readonly string[] _path = [.. path];
    private readonly StringMatcher[] _values = StringMatcher.ParseAll(condition.Values);
    private readonly StringMatcher[] _notValues = StringMatcher.ParseAll(condition.NotValues);

    public override bool Holds(in AuthorizationRequest request)
    {
        var auth = request.Auth;
        if (_values.Length > 0 && (auth is null || !auth.AnyValueMatches(_path, _values)))
        {
            return false;
        }

        return _notValues.Length == 0 || auth is null || !auth.AnyValueMatches(_path, _notValues);
    }
}

internal sealed class SourceIpCondition(AuthorizationCondition condition) : ConditionMatcher
{
    private readonly IpMatcher _values = new(condition.Values);
    private readonly IpMatcher _notValues = new(condition.NotValues);

    public override bool Holds(in AuthorizationRequest request) => IpMatcher.Holds(_values, _notValues, request.SourceIp);
}

internal sealed class DestinationPortCondition(AuthorizationCondition condition) : ConditionMatcher
{
    private readonly int[] _values = [.. condition.Values.Select(int.Parse)];
    private readonly int[] _notValues = [.. condition.NotValues.Select(int.Parse)];

    public override bool Holds(in AuthorizationRequest request) =>
        (_values.Length == 0 || Array.IndexOf(_values, request.Port) >= 0) &&
        (_notValues.Length == 0 || Array.IndexOf(_notValues, request.Port) < 0);
}

/// <summary>
/// A header may arrive more than once. Which reading is safe depends on the action, so the condition
/// is read in the direction that can only add denials:
/// in an ALLOW policy, values holds only if every copy matches and notValues fails if any copy matches;
/// in a DENY (and AUDIT) policy, values holds if any copy matches and notValues holds unless every copy
/// matches. Sending a header twice can therefore never turn a denial into an allow.
/// An absent header never satisfies values and always satisfies notValues. Copies are compared whole;
/// a comma-separated list within one value is not split.
/// </summary>
internal sealed class HeaderCondition(string name, AuthorizationCondition condition, bool denyDirection) : ConditionMatcher
{
    private readonly StringMatcher[] _values = StringMatcher.ParseAll(condition.Values);
    private readonly StringMatcher[] _notValues = StringMatcher.ParseAll(condition.NotValues);

    public override bool Holds(in AuthorizationRequest request)
    {
        var copies = request.Headers is { } headers ? headers[name] : default;
        var count = copies.Count;
        if (_values.Length > 0)
        {
            if (count == 0)
            {
                return false;
            }

            var matching = CountMatching(_values, copies);
            if (denyDirection ? matching == 0 : matching != count)
            {
                return false;
            }
        }

        if (_notValues.Length > 0 && count > 0)
        {
            var matching = CountMatching(_notValues, copies);
            if (denyDirection ? matching == count : matching != 0)
            {
                return false;
            }
        }

        return true;
    }

    private static int CountMatching(StringMatcher[] matchers, Microsoft.Extensions.Primitives.StringValues copies)
    {
        var matching = 0;
        for (var i = 0; i < copies.Count; i++)
        {
            if (StringMatcher.Any(matchers, copies[i]))
            {
                matching++;
            }
        }

        return matching;
    }
}

internal sealed class RuleMatcher(AuthorizationRule rule, AuthorizationAction action)
{
    private readonly SourceMatcher[] _from = [.. rule.From.Select(s => new SourceMatcher(s))];
    private readonly OperationMatcher[] _to = [.. rule.To.Select(o => new OperationMatcher(o))];
    private readonly ConditionMatcher[] _when = [.. rule.When.Select(c => ConditionMatcher.Compile(c, action))];

    public bool Matches(in AuthorizationRequest request)
    {
        if (_from.Length > 0)
        {
            var any = false;
            foreach (var source in _from)
            {
                if (source.Matches(request))
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

        if (_to.Length > 0)
        {
            var any = false;
            foreach (var operation in _to)
            {
                if (operation.Matches(request))
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

        foreach (var condition in _when)
        {
            if (!condition.Holds(request))
            {
                return false;
            }
        }

        return true;
    }
}
