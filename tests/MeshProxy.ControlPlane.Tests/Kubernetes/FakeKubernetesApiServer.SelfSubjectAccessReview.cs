using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// TEST INFRASTRUCTURE: <c>POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews</c>, as the API documents
/// SelfSubjectAccessReview (what <c>kubectl auth can-i</c> asks): 201 with the review echoed back and
/// <c>status.allowed</c>; a spec with neither or both of resourceAttributes and nonResourceAttributes is 422 Invalid.
/// There is no RBAC here: the caller may do everything (as cluster-admin) except what a test puts in
/// <see cref="DeniedAccess"/>, which is answered allowed false with no reason, as RBAC answers when no rule grants it.
/// </summary>
internal sealed partial class FakeKubernetesApiServer
{
    private const string SelfSubjectAccessReviewPath = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

    /// <summary>What the caller may not do: "verb resource" for the core group, "verb resource.group" otherwise (subresources as "resource/sub").</summary>
    public HashSet<string> DeniedAccess { get; } = new(StringComparer.Ordinal);

    private async Task<bool> TryServeSelfSubjectAccessReviewAsync(HttpContext context)
    {
        if (context.Request.Path.Value?.TrimEnd('/') != SelfSubjectAccessReviewPath)
        {
            return false;
        }

        if (context.Request.Method != "POST")
        {
            await StatusAsync(context, 405, "MethodNotAllowed", $"{context.Request.Method} is not supported on selfsubjectaccessreviews (create only)");
            return true;
        }

        JsonObject review;
        try
        {
            review = (await JsonNode.ParseAsync(context.Request.Body))?.AsObject() ?? throw new JsonException("empty body");
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            await StatusAsync(context, 400, "BadRequest", $"the body is not a SelfSubjectAccessReview: {ex.Message}");
            return true;
        }

        var spec = review["spec"] as JsonObject;
        if ((spec?["resourceAttributes"] is JsonObject) == (spec?["nonResourceAttributes"] is JsonObject))
        {
            await StatusAsync(context, 422, "Invalid", "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified");
            return true;
        }

        bool allowed;
        lock (_lock)
        {
            allowed = spec!["resourceAttributes"] is not JsonObject attributes || !DeniedAccess.Contains(Access(attributes));
        }

        var answer = new JsonObject
        {
            ["kind"] = "SelfSubjectAccessReview",
            ["apiVersion"] = "authorization.k8s.io/v1",
            ["metadata"] = new JsonObject { ["creationTimestamp"] = null },
            ["spec"] = spec!.DeepClone(),
            ["status"] = allowed
                ? new JsonObject { ["allowed"] = true, ["reason"] = "RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to User \"admin\"" }
                : new JsonObject { ["allowed"] = false },
        };
        await JsonAsync(context, 201, answer);
        return true;
    }

    private static string Access(JsonObject attributes)
    {
        static string Text(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : string.Empty;
        var resource = Text(attributes["resource"]);
        if (Text(attributes["subresource"]) is { Length: > 0 } sub)
        {
            resource += "/" + sub;
        }

        var group = Text(attributes["group"]);
        return $"{Text(attributes["verb"])} {resource}{(group.Length > 0 ? "." + group : string.Empty)}";
    }
}
