using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// TEST INFRASTRUCTURE: core v1 ConfigMaps (<c>/api/v1/namespaces/{ns}/configmaps[/{name}]</c>, and
/// <c>/api/v1/configmaps</c> across namespaces), stored, listed and watched like every other kind, with the checks the
/// API server makes before it stores one, in its words: a create in a namespace that does not exist is 404
/// (<c>namespaces "x" not found</c>), in one being deleted 403 (<c>unable to create new content in namespace x because
/// it is being terminated</c>); a data key that is not a valid config key (alphanumerics, '-', '_', '.') or data over
/// 1 MiB is 422 Invalid; a replace whose body names another object than its URL is 400; a replace changing the data of
/// one marked <c>immutable: true</c> is 422 (<c>field is immutable when `immutable` is set</c>). ConfigMaps have no status and
/// no generation (the store sets generation only for objects with a spec). A create of an existing one is 409
/// AlreadyExists and a replace carrying a stale resourceVersion 409 Conflict, as for every kind. Field selectors are
/// recorded in <see cref="Requests"/> but not applied (the fake serves no selectors): a client must still check names.
/// </summary>
internal sealed partial class FakeKubernetesApiServer
{
    private const int MaxConfigMapBytes = 1024 * 1024;
    private static readonly Regex ConfigKey = new("^[-._a-zA-Z0-9]+$", RegexOptions.CultureInvariant);

    private void RegisterConfigMaps() => RegisterResource("", "v1", "configmaps", "ConfigMap", namespaced: true);

    /// <summary>Answers a ConfigMap write the API server would refuse; false (body left readable) for anything else.</summary>
    private async Task<bool> TryRefuseConfigMapWriteAsync(HttpContext context)
    {
        var request = context.Request;
        var parts = (request.Path.Value ?? "/").Trim('/').Split('/');
        if (request.Method is not ("POST" or "PUT") || parts is not ["api", "v1", "namespaces", var ns, "configmaps", .. var rest] || rest.Length > 1)
        {
            return false;
        }

        var urlName = rest.Length == 1 ? rest[0] : null;
        request.EnableBuffering();
        JsonObject? body;
        try
        {
            body = (await JsonNode.ParseAsync(request.Body))?.AsObject();
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            body = null;
        }
        finally
        {
            request.Body.Position = 0;
        }

        var name = body?["metadata"]?["name"]?.GetValue<string>() ?? string.Empty;
        if (request.Method == "POST")
        {
            var space = Get("v1", "Namespace", string.Empty, ns);
            if (space is null)
            {
                await StatusAsync(context, 404, "NotFound", $"namespaces \"{ns}\" not found");
                return true;
            }

            if (space["metadata"]?["deletionTimestamp"] is not null || space["status"]?["phase"]?.GetValue<string>() == "Terminating")
            {
                await StatusAsync(context, 403, "Forbidden", $"configmaps \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated");
                return true;
            }
        }
        else if (urlName is not null && name.Length > 0 && name != urlName)
        {
            await StatusAsync(context, 400, "BadRequest", $"the name of the object ({name}) does not match the name on the URL ({urlName})");
            return true;
        }
        else if (urlName is not null && Get("v1", "ConfigMap", ns, urlName) is { } stored
            && stored["immutable"]?.GetValue<bool>() == true && !JsonNode.DeepEquals(stored["data"], body?["data"]))
        {
            // An immutable ConfigMap can only be deleted and created again (the control plane is granted no delete).
            await StatusAsync(context, 422, "Invalid", $"ConfigMap \"{urlName}\" is invalid: data: Forbidden: field is immutable when `immutable` is set");
            return true;
        }

        var size = 0;
        foreach (var (key, value) in body?["data"] as JsonObject ?? [])
        {
            if (!ConfigKey.IsMatch(key))
            {
                await StatusAsync(context, 422, "Invalid",
                    $"ConfigMap \"{name}\" is invalid: data[{key}]: Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
                return true;
            }

            size += key.Length + (value?.GetValue<string>().Length ?? 0);
        }

        if (size > MaxConfigMapBytes)
        {
            await StatusAsync(context, 422, "Invalid", $"ConfigMap \"{name}\" is invalid: []: Too long: must have at most {MaxConfigMapBytes} bytes");
            return true;
        }

        return false;
    }
}
