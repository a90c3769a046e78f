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
/// whose file currently has errors and that are served from their last good version;
/// <see cref="HeldBack"/> the resources that parse but that the sidecars would refuse in the set
/// (see <see cref="PushGate"/>). <see cref="Resources"/> is what is served: neither kind of broken
/// version is in it.
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

    public IReadOnlyList<HeldBackResource> HeldBack { get; init; } = [];
}

/// <summary>
/// A resource version the pre-push check refused: the errors the sidecars would have reported, and the
/// version of the same resource served instead (its last version that passed), if any.
/// </summary>
internal sealed record HeldBackResource(StoredResource Refused, IReadOnlyList<ConfigDiagnostic> Errors, string? ServingVersion)
{
    public string Key => Refused.Key;

    /// <summary>Same resource version, same errors, same fallback: logged once, not at every generation.</summary>
    public bool SameAs(HeldBackResource other) =>
        Key == other.Key && Refused.Version == other.Refused.Version && ServingVersion == other.ServingVersion && Errors.SequenceEqual(other.Errors);
}
