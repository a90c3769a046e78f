using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace MeshProxy.Injection.Capture;

/// <summary>
/// What a pod's traffic capture is: the one value from which both the webhook (reading a pod's
/// annotations) and <c>meshproxy-init</c> (reading its command line) build the iptables rules, so the
/// rules a pod gets are exactly the rules its annotations describe.
/// </summary>
public sealed record CaptureSettings
{
    public const int DefaultProxyUid = 1337;

    /// <summary>The sidecar's own ports, never captured inbound: kubelet probes reach 15020 directly.</summary>
    public static readonly IReadOnlyList<int> SidecarPorts = [15000, 15001, 15006, 15020];

    public int ProxyUid { get; init; } = DefaultProxyUid;

    public int ProxyGid { get; init; } = DefaultProxyUid;

    public int OutboundPort { get; init; } = 15001;

    public int InboundPort { get; init; } = 15006;

    /// <summary>Inbound destination ports sent to the sidecar; null means every port ("*").</summary>
    public IReadOnlyList<int>? IncludeInboundPorts { get; init; }

    public IReadOnlyList<int> ExcludeInboundPorts { get; init; } = [];

    public IReadOnlyList<int> ExcludeOutboundPorts { get; init; } = [];

    public IReadOnlyList<IPNetwork> ExcludeOutboundIPRanges { get; init; } = [];

    /// <summary>Outbound destinations sent to the sidecar; null means every address ("*").</summary>
    public IReadOnlyList<IPNetwork>? IncludeOutboundIPRanges { get; init; }

    /// <summary>The command line of <c>meshproxy-init</c> that reproduces these settings.</summary>
    public IReadOnlyList<string> ToInitArgs()
    {
        var args = new List<string>
        {
            "--proxy-uid", Invariant(ProxyUid),
            "--proxy-gid", Invariant(ProxyGid),
            "--outbound-port", Invariant(OutboundPort),
            "--inbound-port", Invariant(InboundPort),
            "--include-inbound-ports", IncludeInboundPorts is null ? "*" : string.Join(',', IncludeInboundPorts),
        };
        Add("--exclude-inbound-ports", string.Join(',', ExcludeInboundPorts));
        Add("--exclude-outbound-ports", string.Join(',', ExcludeOutboundPorts));
        Add("--exclude-outbound-ip-ranges", string.Join(',', ExcludeOutboundIPRanges));
        args.Add("--include-outbound-ip-ranges");
        args.Add(IncludeOutboundIPRanges is null ? "*" : string.Join(',', IncludeOutboundIPRanges));
        return args;

        void Add(string name, string value)
        {
            if (value.Length > 0)
            {
                args.Add(name);
                args.Add(value);
            }
        }
    }

    /// <summary>Parses <c>meshproxy-init</c>'s options (everything but <c>--dry-run</c>); errors name the option.</summary>
    public static CaptureSettings FromInitArgs(IReadOnlyList<string> args, out bool dryRun)
    {
        var settings = new CaptureSettings();
        dryRun = false;
        for (var i = 0; i < args.Count; i++)
        {
            var name = args[i];
            if (name == "--dry-run")
            {
                dryRun = true;
                continue;
            }

            if (i + 1 >= args.Count)
            {
                throw new CaptureSettingsException($"{name}: a value is required");
            }

            var value = args[++i];
            settings = name switch
            {
                "--proxy-uid" => settings with { ProxyUid = ParseId(name, value) },
                "--proxy-gid" => settings with { ProxyGid = ParseId(name, value) },
                "--outbound-port" => settings with { OutboundPort = ParsePort(name, value) },
                "--inbound-port" => settings with { InboundPort = ParsePort(name, value) },
                "--include-inbound-ports" => settings with { IncludeInboundPorts = value.Trim() == "*" ? null : ParsePorts(name, value) },
                "--exclude-inbound-ports" => settings with { ExcludeInboundPorts = ParsePorts(name, value) },
                "--exclude-outbound-ports" => settings with { ExcludeOutboundPorts = ParsePorts(name, value) },
                "--exclude-outbound-ip-ranges" => settings with { ExcludeOutboundIPRanges = ParseRanges(name, value) },
                "--include-outbound-ip-ranges" => settings with { IncludeOutboundIPRanges = value.Trim() == "*" ? null : ParseRanges(name, value) },
                _ => throw new CaptureSettingsException($"unknown option '{name}'"),
            };
        }

        return settings;
    }

    /// <summary>A comma-separated port list ("" is empty); every entry 1..65535.</summary>
    public static IReadOnlyList<int> ParsePorts(string source, string value)
    {
        var ports = new List<int>();
        foreach (var part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            ports.Add(ParsePort(source, part));
        }

        return ports;
    }

    /// <summary>A comma-separated list of IPv4 CIDRs ("" is empty). A bare address means /32.</summary>
    public static IReadOnlyList<IPNetwork> ParseRanges(string source, string value)
    {
        var ranges = new List<IPNetwork>();
        foreach (var part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            IPNetwork network;
            if (IPNetwork.TryParse(part, out var parsed))
            {
                network = parsed;
            }
            else if (!part.Contains('/', StringComparison.Ordinal) && IPAddress.TryParse(part, out var address))
            {
                network = new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128);
            }
            else
            {
                throw new CaptureSettingsException($"{source}: '{part}' is not a CIDR such as 10.0.0.0/8");
            }

            // The rules are installed with iptables (IPv4); an IPv6 range would silently do nothing.
            if (network.BaseAddress.AddressFamily != AddressFamily.InterNetwork)
            {
                throw new CaptureSettingsException($"{source}: '{part}' is IPv6; only IPv4 capture is supported");
            }

            ranges.Add(network);
        }

        return ranges;
    }

    private static int ParsePort(string source, string value) =>
        int.TryParse(value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and <= 65535
            ? port
            : throw new CaptureSettingsException($"{source}: '{value}' is not a port (1-65535)");

    private static int ParseId(string source, string value) =>
        int.TryParse(value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var id)
            ? id
            : throw new CaptureSettingsException($"{source}: '{value}' is not a numeric id");

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A capture setting that cannot be honoured; the message names the annotation or option.</summary>
public sealed class CaptureSettingsException(string message) : Exception(message);
