using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Resources;

namespace MeshProxy.ControlPlane.Kubernetes.CustomResources;

/// <summary>What reading one custom object gave: the resource to serve, or the errors (file-free: field and reason) that keep it out.</summary>
internal sealed record CustomResourceRead(string Key, StoredResource? Resource, IReadOnlyList<ConfigDiagnostic> Errors, IReadOnlyList<ConfigDiagnostic> Warnings);

/// <summary>
/// A meshproxy.io custom object, or one of Istio's security.istio.io policies (AuthorizationPolicy, PeerAuthentication,
/// RequestAuthentication: our kinds take their spec unchanged), into the resource model through
/// the same parser as the directory's files: the object is rewritten as the document a file would hold (apiVersion,
/// kind, metadata name/namespace/labels/annotations, spec unchanged) and parsed, named by its key
/// (<c>Kind/namespace/name</c>) where a file name would be. So a CRD object and a file can never mean different
/// things, and the text pushed to sidecars is that document (JSON, which is YAML), parsed there by the same parser.
/// </summary>
internal static class CustomResourceReader
{
    /// <summary>Istio's policy API versions; the spec is the same in both.</summary>
    public static readonly IReadOnlyList<string> IstioSecurityApiVersions = ["security.istio.io/v1", "security.istio.io/v1beta1"];

    /// <summary>
    /// An Istio policy is served under its name plus this, so that it never collides with a meshproxy.io
    /// AuthorizationPolicy of the same name (both may exist during a migration).
    /// </summary>
    public const string IstioNameSuffix = ".istio";

    // Holds the whole object as kubectl last applied it: pushing it to every sidecar would double what they receive.
    private const string LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration";

    public static string KeyOf(CustomObject obj) => $"{obj.Kind}/{obj.Namespace}/{ServedName(obj)}";

    public static CustomResourceRead Read(CustomObject obj)
    {
        var key = KeyOf(obj);
        if (obj.ApiVersion != Resource.ApiVersion && !IsIstioPolicy(obj))
        {
            return new CustomResourceRead(key, null, [new ConfigDiagnostic(key, 0, "apiVersion", $"'{obj.ApiVersion}' {obj.Kind} is not read by MeshProxy")], []);
        }

        var text = Document(obj);
        var parsed = ResourceParser.ParseText(text, key);
        var resource = parsed.Resources.Count == 1 && parsed.IsValid
            ? new StoredResource(parsed.Resources[0], text, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..12])
            : null;
        return new CustomResourceRead(key, resource, parsed.Errors, parsed.Warnings);
    }

    /// <summary>The security.istio.io kinds whose spec our parser reads with Istio's meaning (and refuses, field by field, what it cannot honour).</summary>
    public static readonly IReadOnlyList<string> IstioSecurityKinds =
        [AuthorizationPolicyResource.KindName, PeerAuthenticationResource.KindName, RequestAuthenticationResource.KindName];

    private static bool IsIstioPolicy(CustomObject obj) =>
        IstioSecurityKinds.Contains(obj.Kind) && IstioSecurityApiVersions.Contains(obj.ApiVersion);

    private static string ServedName(CustomObject obj) => IsIstioPolicy(obj) ? obj.Name + IstioNameSuffix : obj.Name;

    private static string Document(CustomObject obj)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("apiVersion", Resource.ApiVersion);
            json.WriteString("kind", obj.Kind);
            json.WriteStartObject("metadata");
            json.WriteString("name", ServedName(obj));
            json.WriteString("namespace", obj.Namespace);
            WriteMap(json, "labels", obj.Metadata.Labels, static _ => true);
            WriteMap(json, "annotations", obj.Metadata.Annotations, static k => k != LastAppliedAnnotation);
            json.WriteEndObject();
            if (obj.Spec.ValueKind != JsonValueKind.Undefined)
            {
                json.WritePropertyName("spec");
                obj.Spec.WriteTo(json);
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteMap(Utf8JsonWriter json, string name, IDictionary<string, string>? map, Func<string, bool> keep)
    {
        if (map is null || map.Count == 0)
        {
            return;
        }

        json.WriteStartObject(name);
        foreach (var (k, v) in map.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            if (keep(k))
            {
                json.WriteString(k, v);
            }
        }

        json.WriteEndObject();
    }
}
