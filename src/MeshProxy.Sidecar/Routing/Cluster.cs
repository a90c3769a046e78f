using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.LoadBalancing;

namespace MeshProxy.Sidecar.Routing;

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

    public override string ToString() => $"{FormatHost(Address)}:{Port}";

    private static string FormatHost(string address) => address.Contains(':') ? $"[{address}]" : address;
}

/// <summary>
/// A concrete upstream: one port of one service (outbound), or the local app (inbound). Named like
/// Envoy's clusters so that operators can read logs and /config_dump with what they already know.
/// </summary>
internal sealed class Cluster
{
    public Cluster(string name, string serviceName, string serviceNamespace, AppProtocol protocol, IReadOnlyList<UpstreamEndpoint> endpoints)
    {
        Name = name;
        ServiceName = serviceName;
        ServiceNamespace = serviceNamespace;
        Protocol = protocol;
        Endpoints = endpoints;
        Picker = new RoundRobinPicker(endpoints);
    }

    /// <summary>outbound|port||host, the Envoy/Istio convention; inbound|port|| for the local app.</summary>
    public string Name { get; }

    public string ServiceName { get; }

    public string ServiceNamespace { get; }

    public AppProtocol Protocol { get; }

    public IReadOnlyList<UpstreamEndpoint> Endpoints { get; }

    public IEndpointPicker Picker { get; }
}
