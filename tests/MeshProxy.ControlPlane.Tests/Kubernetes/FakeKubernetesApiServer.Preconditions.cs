using System.Text.Json.Nodes;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// TEST INFRASTRUCTURE: a merge patch that carries <c>metadata.resourceVersion</c> is an optimistic lock, as on the
/// API server (the patched object keeps that resourceVersion, and an update whose resourceVersion is not the stored
/// one is 409 Conflict): the status writers of several control-plane replicas rely on it.
/// </summary>
internal sealed partial class FakeKubernetesApiServer
{
    private static void CheckPatchPrecondition(ResourceType type, JsonObject current, JsonObject patch, string name)
    {
        if (patch["metadata"]?["resourceVersion"] is JsonValue expected
            && expected.GetValue<string>() != current["metadata"]!["resourceVersion"]!.GetValue<string>())
        {
            throw new ApiError(409, "Conflict",
                $"Operation cannot be fulfilled on {type.Plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again");
        }
    }
}
