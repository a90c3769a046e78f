namespace MeshProxy.Config.Resources;

/// <summary>
/// A service in the mesh (or outside it): the names it answers to, its ports and its endpoints, each
/// endpoint with the identity it is expected to present.
/// </summary>
public sealed record ServiceResource(ObjectMeta Metadata, SourceLocation Source, ServiceSpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "Service";

    public override string Kind => KindName;
}

public sealed record ServiceSpec(
    IReadOnlyList<string> Hosts,
    IReadOnlyList<string> Addresses,
    IReadOnlyList<ServicePort> Ports,
    IReadOnlyList<ServiceEndpoint> Endpoints,
    IReadOnlyList<string> SubjectAltNames);

/// <summary>A port the service is called on; <see cref="TargetPort"/> is where its endpoints listen, unless an endpoint says otherwise.</summary>
public sealed record ServicePort(string Name, int Port, int TargetPort, AppProtocol Protocol);

/// <summary>One instance of the service. <see cref="Port"/> overrides the service port's target port.</summary>
public sealed record ServiceEndpoint(
    string Address,
    int? Port,
    IReadOnlyDictionary<string, string> Labels,
    int Weight,
    string? ServiceAccount);
