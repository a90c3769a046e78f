using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.ControlPlane.Resources;

/// <summary>One valid resource as it is served: the typed value, its YAML document, and a hash of that document.</summary>
internal sealed record StoredResource(Resource Resource, string Yaml, string Version)
{
    public string Key => Resource.Key;
}

/// <summary>
/// The whole configuration at one moment, immutable. <see cref="KeptLastGood"/> names the resources
/// whose file currently has errors and that are served from their last good version.
/// </summary>
internal sealed record ConfigState(
    long Generation,
    IReadOnlyList<StoredResource> Resources,
    IReadOnlyList<ConfigDiagnostic> Errors,
    IReadOnlyList<ConfigDiagnostic> Warnings,
    IReadOnlyList<string> KeptLastGood,
    int InvalidResources)
{
    public static ConfigState Empty { get; } = new(0, [], [], [], [], 0);
}
