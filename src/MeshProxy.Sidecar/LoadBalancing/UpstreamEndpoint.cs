namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>One upstream instance, with its forwarding address prepared once per snapshot.</summary>
internal sealed class UpstreamEndpoint(string address, int port, int weight, string? identity)
{
    public string Address { get; } = address;

    public int Port { get; } = port;

    public int Weight { get; } = weight;

    /// <summary>The SPIFFE ID or service account this endpoint must present (checked once mTLS is on).</summary>
    public string? Identity { get; } = identity;

    /// <summary>"http://address:port", built once so forwarding does not format a string per request.</summary>
    public string DestinationPrefix { get; } = $"http://{FormatHost(address)}:{port}";

    /// <summary>"address:port": the endpoint's identity within its cluster, across snapshots.</summary>
    public string Key { get; } = $"{FormatHost(address)}:{port}";

    /// <summary>
    /// Live load and outlier state. Set when the cluster is built and, before the snapshot is
    /// published, replaced by the record of the same endpoint in the previous snapshot; never changed
    /// once requests can see it.
    /// </summary>
    public EndpointHealth Health { get; internal set; } = new();

    public override string ToString() => Key;

    private static string FormatHost(string address) => address.Contains(':') ? $"[{address}]" : address;
}
