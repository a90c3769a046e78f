using MeshProxy.Authorization;
using MeshProxy.Config.Resources;

namespace MeshProxy.Sidecar.ExternalAuthorization;

/// <summary>
/// The providers this workload's CUSTOM policies name, resolved against MeshConfig's extensionProviders once per
/// snapshot. A provider that cannot be used (not defined, or a second provider on one workload, which Istio does
/// not allow either) stays in the set with the reason: requests its policies match are refused with 403, never let
/// through unchecked (Istio fails closed the same way).
/// </summary>
internal sealed class ExternalAuthorizationProviders
{
    public static ExternalAuthorizationProviders None { get; } = new([], string.Empty);

    private readonly Dictionary<string, ExternalAuthorizationProvider> _byName;

    private ExternalAuthorizationProviders(Dictionary<string, ExternalAuthorizationProvider> byName, string workloadPrincipal)
    {
        _byName = byName;
        WorkloadPrincipal = workloadPrincipal;
    }

    /// <summary>The workload's SPIFFE ID, the CheckRequest's destination principal (built once, not per request).</summary>
    public string WorkloadPrincipal { get; }

    /// <summary>What is wrong with this workload's CUSTOM policies' providers, one line each; logged once per snapshot, on the first request they refuse.</summary>
    public IReadOnlyList<string> Problems => [.. _byName.Values.Where(p => p.Unusable is not null).Select(p => p.Unusable!)];

    public IReadOnlyCollection<ExternalAuthorizationProvider> All => _byName.Values;

    public static ExternalAuthorizationProviders Build(AuthorizationEngine engine, MeshConfigSpec mesh, WorkloadSpec workload)
    {
        var names = engine.CustomProviders;
        if (names.Count == 0)
        {
            return None;
        }

        var result = new Dictionary<string, ExternalAuthorizationProvider>(StringComparer.Ordinal);
        foreach (var name in names)
        {
            var defined = mesh.ExtensionProviders.FirstOrDefault(p => p.Name == name);
            var unusable = defined is null
                ? $"provider '{name}' is not defined in MeshConfig extensionProviders: requests its CUSTOM policies match are denied"
                : names.Count > 1
                    ? $"CUSTOM policies on this workload name {names.Count} providers ({string.Join(", ", names)}) and only one is allowed: requests they match are denied"
                    : null;
            result[name] = new ExternalAuthorizationProvider(name, defined?.ExtAuthzGrpc, unusable);
        }

        return new ExternalAuthorizationProviders(result, $"spiffe://{mesh.TrustDomain}/ns/{workload.Namespace}/sa/{workload.ServiceAccount}");
    }

    /// <summary>The provider a CUSTOM match names; always present for a name the snapshot's engine holds.</summary>
    public ExternalAuthorizationProvider Get(string name) =>
        _byName.TryGetValue(name, out var provider) ? provider
        : new ExternalAuthorizationProvider(name, null, $"provider '{name}' is not known to this snapshot");
}

/// <summary>One provider as the inbound step uses it: where to send the Check, how long to wait, what to do on failure, which headers pass.</summary>
internal sealed class ExternalAuthorizationProvider(string name, ExtAuthzGrpcProvider? spec, string? unusable)
{
    public string Name { get; } = name;

    /// <summary>Null when <see cref="Unusable"/> is set.</summary>
    public ExtAuthzGrpcProvider? Spec { get; } = spec;

    /// <summary>Why requests for this provider are refused without a Check; null when it can be asked.</summary>
    public string? Unusable { get; } = unusable;

    /// <summary>The channel key: one HTTP/2 connection pool per server, shared by every snapshot.</summary>
    public string Address { get; } = AddressOf(spec);

    /// <summary>The channel key of the same server reached as a mesh service, over mTLS (its connections differ from <see cref="Address"/>'s).</summary>
    public string MeshKey { get; } = "mtls+" + AddressOf(spec);

    public HeaderNames RequestHeaders { get; } = new(spec?.IncludeRequestHeadersInCheck ?? []);

    public HeaderNames UpstreamHeaders { get; } = new(spec?.HeadersToUpstreamOnAllow ?? []);

    public HeaderNames DownstreamHeaders { get; } = new(spec?.HeadersToDownstreamOnDeny ?? []);

    private static string AddressOf(ExtAuthzGrpcProvider? spec) => spec is null ? string.Empty
        : System.Net.IPAddress.TryParse(spec.Service, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? $"http://[{spec.Service}]:{spec.Port}"
            : $"http://{spec.Service}:{spec.Port}";
}

/// <summary>Istio's header name matches ("name", "prefix*", "*suffix", "*"), case-insensitive; no patterns lets every name through.</summary>
internal sealed class HeaderNames(IReadOnlyList<string> patterns)
{
    private readonly StringMatcher[] _matchers = StringMatcher.ParseAll(patterns, ignoreCase: true);

    public bool Allows(string name) => _matchers.Length == 0 || StringMatcher.Any(_matchers, name);
}
