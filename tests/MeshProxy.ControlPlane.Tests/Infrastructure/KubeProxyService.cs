using System.Net;
using System.Security.Cryptography;

namespace MeshProxy.ControlPlane.Tests.Infrastructure;

/// <summary>
/// A ClusterIP Service made the way kube-proxy's iptables mode makes one: a virtual address with no socket behind it,
/// and a nat-table chain that DNATs each new connection to one endpoint picked by <c>-m statistic --mode random</c>
/// (endpoint i of n with probability 1/(n-i), so each is equally likely), jumped to from OUTPUT for that address only.
/// The address is a random one of 127.0.0.0/8 (locally generated traffic, so OUTPUT is where the DNAT applies, and a
/// loopback source may be rewritten to a loopback endpoint); the chain name is random too, so parallel tests never share
/// rules. Connections already made keep their endpoint (conntrack), as in a cluster. Needs root.
/// </summary>
internal sealed class KubeProxyService : IDisposable
{
    private readonly string _chain = "MP-SVC-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(6));
    private bool _jumped;

    private KubeProxyService(IPAddress address, int port)
    {
        Address = address;
        Port = port;
    }

    /// <summary>The Service's virtual IP.</summary>
    public IPAddress Address { get; }

    public int Port { get; }

    public string HostPort => $"{Address}:{Port}";

    /// <summary>A Service on a fresh virtual IP, with its endpoints (loopback ports).</summary>
    public static async Task<KubeProxyService> CreateAsync(int port, IReadOnlyList<int> endpoints)
    {
        var bytes = RandomNumberGenerator.GetBytes(3);
        var service = new KubeProxyService(new IPAddress([127, (byte)(100 + (bytes[0] % 100)), bytes[1], (byte)(1 + (bytes[2] % 250))]), port);
        await IptablesAsync("-t", "nat", "-N", service._chain);
        await service.SetEndpointsAsync(endpoints);
        await IptablesAsync("-t", "nat", "-I", "OUTPUT", "-d", service.Address.ToString(), "-p", "tcp", "--dport", port.ToString(), "-j", service._chain);
        service._jumped = true;
        return service;
    }

    /// <summary>What kube-proxy does when the Service's EndpointSlice changes: the chain rewritten with the endpoints now ready.</summary>
    public async Task SetEndpointsAsync(IReadOnlyList<int> endpoints)
    {
        await IptablesAsync("-t", "nat", "-F", _chain);
        for (var i = 0; i < endpoints.Count; i++)
        {
            string[] pick = i == endpoints.Count - 1 ? [] : ["-m", "statistic", "--mode", "random", "--probability", (1.0 / (endpoints.Count - i)).ToString("0.#####", System.Globalization.CultureInfo.InvariantCulture)];
            await IptablesAsync(["-t", "nat", "-A", _chain, "-p", "tcp", .. pick, "-j", "DNAT", "--to-destination", $"127.0.0.1:{endpoints[i]}"]);
        }
    }

    /// <summary>The rules as iptables lists them, with packet counts (for a failure message).</summary>
    public async Task<string> DescribeAsync() => (await Run.ProcessAsync("iptables", ["-t", "nat", "-L", _chain, "-n", "-v"])).Stdout;

    public void Dispose()
    {
        if (_jumped)
        {
            _ = Run.ProcessAsync("iptables", ["-t", "nat", "-D", "OUTPUT", "-d", Address.ToString(), "-p", "tcp", "--dport", Port.ToString(), "-j", _chain]).GetAwaiter().GetResult();
        }

        _ = Run.ProcessAsync("iptables", ["-t", "nat", "-F", _chain]).GetAwaiter().GetResult();
        _ = Run.ProcessAsync("iptables", ["-t", "nat", "-X", _chain]).GetAwaiter().GetResult();
    }

    private static async Task IptablesAsync(params string[] args)
    {
        var result = await Run.ProcessAsync("iptables", args);
        if (result.Exit != 0)
        {
            throw new InvalidOperationException($"iptables {string.Join(' ', args)}: exit {result.Exit}: {result.Stderr}");
        }
    }
}
