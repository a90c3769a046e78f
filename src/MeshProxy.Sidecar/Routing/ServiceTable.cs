using System.Collections.Frozen;
using System.Net;

namespace MeshProxy.Sidecar.Routing;

/// <summary>
/// Finds the virtual host an outbound request is for: by the original destination address of a
/// transparently captured connection, or by the Host / :authority the app wrote.
/// </summary>
internal sealed class ServiceTable
{
    private readonly FrozenDictionary<string, HostEntry> _byHost;
    private readonly FrozenDictionary<string, HostEntry>.AlternateLookup<ReadOnlySpan<char>> _byHostSpan;
    private readonly FrozenDictionary<IPEndPoint, VirtualHost> _byAddress;

    public ServiceTable(IEnumerable<KeyValuePair<string, HostEntry>> hosts, IEnumerable<KeyValuePair<IPEndPoint, VirtualHost>> addresses)
    {
        _byHost = hosts.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);
        _byHostSpan = _byHost.GetAlternateLookup<ReadOnlySpan<char>>();
        _byAddress = addresses.ToFrozenDictionary();
    }

    public static ServiceTable Empty { get; } = new([], []);

    public IEnumerable<string> Hosts => _byHost.Keys;

    public IEnumerable<VirtualHost> VirtualHosts => _byHost.Values.SelectMany(h => h.Ports.Values).Distinct();

    public bool TryResolve(IPEndPoint originalDestination, out VirtualHost? virtualHost) =>
        _byAddress.TryGetValue(originalDestination, out virtualHost);

    /// <summary>
    /// Resolves "host", "host:port" or "[v6]:port". <paramref name="impliedPort"/> is used when the
    /// authority carries no port (the captured connection's port, or 80).
    /// </summary>
    public bool TryResolve(ReadOnlySpan<char> authority, int impliedPort, out VirtualHost? virtualHost)
    {
        virtualHost = null;
        if (!TrySplitAuthority(authority, out var host, out var port))
        {
            return false;
        }

        if (!_byHostSpan.TryGetValue(host, out var entry))
        {
            return false;
        }

        return entry.TryGetPort(port ?? impliedPort, out virtualHost);
    }

    internal static bool TrySplitAuthority(ReadOnlySpan<char> authority, out ReadOnlySpan<char> host, out int? port)
    {
        port = null;
        host = authority;
        if (authority.IsEmpty)
        {
            return false;
        }

        int colon;
        if (authority[0] == '[')
        {
            var close = authority.IndexOf(']');
            if (close < 0)
            {
                return false;
            }

            host = authority[1..close];
            colon = close + 1 < authority.Length && authority[close + 1] == ':' ? close + 1 : -1;
        }
        else
        {
            colon = authority.LastIndexOf(':');
            host = colon < 0 ? authority : authority[..colon];
        }

        if (colon >= 0)
        {
            if (!int.TryParse(authority[(colon + 1)..], System.Globalization.NumberStyles.None, null, out var p) || p is < 1 or > 65535)
            {
                return false;
            }

            port = p;
        }

        // A fully qualified name may end with a dot; it names the same host.
        if (host.Length > 1 && host[^1] == '.')
        {
            host = host[..^1];
        }

        return !host.IsEmpty;
    }
}

/// <summary>The ports of one service, reached through one of its host names.</summary>
internal sealed class HostEntry(FrozenDictionary<int, VirtualHost> ports)
{
    public FrozenDictionary<int, VirtualHost> Ports { get; } = ports;

    /// <summary>
    /// A service with a single port is reached on it whatever port the authority implies, the way a
    /// client that writes "http://billing/" expects; with several ports the port must match.
    /// </summary>
    public bool TryGetPort(int port, out VirtualHost? virtualHost)
    {
        if (Ports.TryGetValue(port, out virtualHost))
        {
            return true;
        }

        if (Ports.Count == 1)
        {
            virtualHost = Ports.Values[0];
            return true;
        }

        return false;
    }
}
