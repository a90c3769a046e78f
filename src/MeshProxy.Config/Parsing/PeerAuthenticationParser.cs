using System.Globalization;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Parsing;

/// <summary>
/// Reads a PeerAuthentication. As for AuthorizationPolicy, an unknown field is an error, not a warning: a
/// misspelt <c>mtls</c> silently ignored would leave the workload on an inherited, perhaps PERMISSIVE, mode.
/// </summary>
internal static class PeerAuthenticationParser
{
    private static readonly IReadOnlyList<string> Modes = ["UNSET", "STRICT", "PERMISSIVE", "DISABLE"];

    public static Resource? Parse(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        var matchLabels = (IReadOnlyDictionary<string, string>)new Dictionary<string, string>();
        if (spec.Map("selector") is { } selector)
        {
            matchLabels = selector.StringMap("matchLabels");
            if (matchLabels.Count == 0)
            {
                // An empty selector would read as "every workload" to some and "none" to others: say which is meant.
                selector.Error("matchLabels", "needs at least one label; leave out the selector for a namespace-wide (or, in the root namespace, mesh-wide) policy");
            }

            selector.RejectUnknown();
        }

        MtlsMode? mode = null;
        if (spec.Map("mtls") is { } mtls)
        {
            mode = ModeOf(mtls.Enum("mode", Modes));
            mtls.RejectUnknown();
        }

        var ports = new SortedDictionary<int, MtlsMode?>();
        var portLevel = spec.NamedMaps("portLevelMtls");
        if (portLevel.Count > 0 && matchLabels.Count == 0)
        {
            // Istio's rule: a port number means something only for the workloads a selector picks.
            spec.Error("portLevelMtls", "needs a workload selector (selector.matchLabels): ports are the selected workload's target ports");
        }

        foreach (var (name, value) in portLevel)
        {
            if (!int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                spec.Sink.Error(value.Node, value.Path, $"'{name}' is not a port number (1-65535)");
                continue;
            }

            var portMode = ModeOf(value.Enum("mode", Modes, required: true));
            value.RejectUnknown();
            ports[port] = portMode;
        }

        spec.RejectUnknown();
        return new PeerAuthenticationResource(meta, source, new PeerAuthenticationSpec(matchLabels, mode, ports));
    }

    private static MtlsMode? ModeOf(string? text) => text switch
    {
        "STRICT" => MtlsMode.Strict,
        "PERMISSIVE" => MtlsMode.Permissive,
        "DISABLE" => MtlsMode.Disable,
        _ => null, // UNSET, absent, or refused above
    };
}
