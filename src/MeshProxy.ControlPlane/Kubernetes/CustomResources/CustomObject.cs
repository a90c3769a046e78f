using System.Text.Json;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace MeshProxy.ControlPlane.Kubernetes.CustomResources;

/// <summary>
/// A custom object as the API server serves it (meshproxy.io kinds, Gateway API routes, Istio's
/// AuthorizationPolicy): metadata typed, spec and status left as JSON for the translators to read.
/// </summary>
internal sealed class CustomObject : IKubernetesObject<V1ObjectMeta>
{
    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = string.Empty;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = string.Empty;

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    /// <summary>Undefined when the object has none.</summary>
    [JsonPropertyName("spec")]
    public JsonElement Spec { get; set; }

    [JsonPropertyName("status")]
    public JsonElement Status { get; set; }

    public string Namespace => Metadata.NamespaceProperty ?? "default";

    public string Name => Metadata.Name;

    public long Generation => Metadata.Generation ?? 0;
}
