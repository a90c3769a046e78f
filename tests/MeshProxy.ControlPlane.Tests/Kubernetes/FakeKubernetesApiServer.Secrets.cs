using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// TEST INFRASTRUCTURE: core v1 Secrets and coordination.k8s.io/v1 Leases on the fake API server, with the checks the
/// API server documents for them on top of the store's generic semantics (POST of an existing name is 409
/// AlreadyExists; PUT with a <c>metadata.resourceVersion</c> other than the stored one is 409 Conflict; PUT without one
/// is unconditional; every write gets the next resourceVersion):
/// <list type="bullet">
/// <item>Secret: <c>data</c> keys must be made of alphanumerics, '-', '_' or '.', and values base64 (422 Invalid /
/// 400); <c>type</c> defaults to Opaque and cannot change (422 "field is immutable"); <c>kubernetes.io/tls</c> needs
/// <c>tls.crt</c> and <c>tls.key</c> (422); a Secret with <c>immutable: true</c> refuses changes to its data (422);</item>
/// <item>Lease: <c>spec.leaseDurationSeconds</c>, when set, must be greater than 0 (422).</item>
/// </list>
/// Test hook: <see cref="SecretsAndLeases"/> counts the requests on both (method, path), to check RBAC against them.
/// </summary>
internal sealed partial class FakeKubernetesApiServer
{
    private static readonly Regex SecretKey = new("^[-._a-zA-Z0-9]+$", RegexOptions.CultureInvariant);

    /// <summary>Requests made on Secrets and Leases, as "METHOD path" (no query).</summary>
    public IReadOnlyList<string> SecretsAndLeases
    {
        get
        {
            lock (_lock)
            {
                return [.. Requests.Select(r => r.Split('?')[0]).Where(r => r.Contains("/secrets", StringComparison.Ordinal) || r.Contains("/leases", StringComparison.Ordinal))];
            }
        }
    }

    private void RegisterSecretsAndLeases()
    {
        RegisterResource("", "v1", "secrets", "Secret", namespaced: true);
        RegisterResource("coordination.k8s.io", "v1", "leases", "Lease", namespaced: true);
    }

    /// <summary>The kind-specific validation of a create (<paramref name="current"/> null) or an update; throws the API's answer.</summary>
    private static void ValidateSecretOrLease(ResourceType type, JsonObject? current, JsonObject incoming)
    {
        if (type.Kind == "Secret")
        {
            incoming["type"] ??= "Opaque";
            var kind = incoming["type"]!.GetValue<string>();
            var data = incoming["data"] as JsonObject ?? [];
            foreach (var (key, value) in data)
            {
                if (!SecretKey.IsMatch(key))
                {
                    throw new ApiError(422, "Invalid", $"Secret \"{Name(incoming)}\" is invalid: data[{key}]: Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
                }

                try
                {
                    Convert.FromBase64String(value?.GetValue<string>() ?? string.Empty);
                }
                catch (Exception ex) when (ex is FormatException or InvalidOperationException)
                {
                    throw new ApiError(400, "BadRequest", $"Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{key}]");
                }
            }

            if (kind == "kubernetes.io/tls" && (!data.ContainsKey("tls.crt") || !data.ContainsKey("tls.key")))
            {
                throw new ApiError(422, "Invalid", $"Secret \"{Name(incoming)}\" is invalid: data[tls.crt], data[tls.key]: Required value");
            }

            if (current is not null)
            {
                if (current["type"]?.GetValue<string>() is { } was && was != kind)
                {
                    throw new ApiError(422, "Invalid", $"Secret \"{Name(incoming)}\" is invalid: type: Invalid value: \"{kind}\": field is immutable");
                }

                if (current["immutable"]?.GetValue<bool>() == true && !JsonNode.DeepEquals(current["data"], incoming["data"]))
                {
                    throw new ApiError(422, "Invalid", $"Secret \"{Name(incoming)}\" is invalid: data: Forbidden: field is immutable when `immutable` is set");
                }
            }
        }
        else if (type.Kind == "Lease" && incoming["spec"]?["leaseDurationSeconds"] is JsonValue duration && duration.GetValue<long>() <= 0)
        {
            throw new ApiError(422, "Invalid", $"Lease.coordination.k8s.io \"{Name(incoming)}\" is invalid: spec.leaseDurationSeconds: Invalid value: {duration.GetValue<long>()}: must be greater than 0");
        }

        static string Name(JsonObject o) => o["metadata"]?["name"]?.GetValue<string>() ?? string.Empty;
    }
}
