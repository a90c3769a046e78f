using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MeshProxy.Injection.Admission;

/// <summary>What the webhook answers: an HTTP status and a JSON body.</summary>
public sealed record AdmissionReply(int StatusCode, string Body, InjectionOutcome? Outcome, string Detail);

/// <summary>
/// admission.k8s.io/v1 AdmissionReview in, AdmissionReview out. A body that is not an AdmissionReview
/// with a request uid cannot be answered in kind (the API server matches the response's uid), so it
/// gets HTTP 400 and the webhook's failurePolicy decides. Anything else is answered with a review:
/// a pod that cannot be injected is admitted unchanged with a warning (fail open) or refused
/// (<see cref="InjectorOptions.FailClosed"/>).
/// </summary>
public sealed class AdmissionReviewHandler(SidecarInjector injector)
{
    public const string ApiVersion = "admission.k8s.io/v1";

    // The API server may cut longer warnings; keep ours whole.
    private const int MaxWarningLength = 256;

    public AdmissionReply Handle(ReadOnlySpan<byte> body)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(body);
        }
        catch (JsonException ex)
        {
            return BadRequest($"the request body is not JSON: {ex.Message}");
        }

        if (root is not JsonObject review)
        {
            return BadRequest("the request body is not a JSON object");
        }

        if (Text(review["kind"]) != "AdmissionReview" || Text(review["apiVersion"]) != ApiVersion)
        {
            return BadRequest($"expected kind AdmissionReview, apiVersion {ApiVersion}; got kind '{Text(review["kind"])}', apiVersion '{Text(review["apiVersion"])}'");
        }

        if (review["request"] is not JsonObject request || Text(request["uid"]) is not { Length: > 0 } uid)
        {
            return BadRequest("the AdmissionReview has no request.uid");
        }

        // From here on the API server gets an AdmissionReview whatever happens.
        var kind = Text(request["kind"]?["kind"]);
        if (kind != "Pod" || Text(request["kind"]?["group"]) is { Length: > 0 })
        {
            return Fail(uid, $"expected a Pod, got '{kind}'");
        }

        if (Text(request["operation"]) is { } operation && operation != "CREATE")
        {
            return Allow(uid, null, [], InjectionOutcome.Skipped, $"operation {operation}: only new pods are injected");
        }

        if (request["object"] is not JsonObject pod)
        {
            return Fail(uid, "request.object is missing or not an object");
        }

        var ns = Text(request["namespace"]) ?? Text(pod["metadata"]?["namespace"]) ?? "default";
        InjectionResult result;
        try
        {
            result = injector.Inject(pod, new InjectionTarget(ns));
        }
        catch (Exception ex) when (ex is InjectionException or InvalidOperationException or FormatException)
        {
            // InvalidOperationException / FormatException: a field of the wrong JSON type.
            return Fail(uid, ex.Message);
        }

        if (result.Outcome != InjectionOutcome.Injected)
        {
            return Allow(uid, null, [], result.Outcome, result.Reason);
        }

        var patch = JsonPatchBuilder.Diff(pod, result.Pod);
        return Allow(uid, patch, [], InjectionOutcome.Injected, result.Reason);
    }

    private AdmissionReply Fail(string uid, string reason)
    {
        var message = $"meshproxy: sidecar not injected: {reason}";
        if (!injector.Options.FailClosed)
        {
            return Allow(uid, null, [Truncate(message)], null, reason);
        }

        var response = new JsonObject
        {
            ["uid"] = uid,
            ["allowed"] = false,
            ["status"] = new JsonObject { ["code"] = 400, ["reason"] = "BadRequest", ["message"] = message },
        };
        return new AdmissionReply(200, Review(response), null, reason);
    }

    private static AdmissionReply Allow(string uid, JsonArray? patch, IReadOnlyList<string> warnings, InjectionOutcome? outcome, string detail)
    {
        var response = new JsonObject { ["uid"] = uid, ["allowed"] = true };
        if (patch is { Count: > 0 })
        {
            response["patchType"] = "JSONPatch";
            response["patch"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(patch.ToJsonString()));
        }

        if (warnings.Count > 0)
        {
            response["warnings"] = new JsonArray(warnings.Select(w => (JsonNode)JsonValue.Create(w)).ToArray());
        }

        return new AdmissionReply(200, Review(response), outcome, detail);
    }

    private static string Review(JsonObject response) =>
        new JsonObject { ["apiVersion"] = ApiVersion, ["kind"] = "AdmissionReview", ["response"] = response }.ToJsonString();

    private static AdmissionReply BadRequest(string message) =>
        new(400, new JsonObject { ["error"] = message }.ToJsonString(), null, message);

    private static string? Text(JsonNode? node) => node is JsonValue value && value.TryGetValue<string>(out var s) ? s : null;

    private static string Truncate(string s) => s.Length <= MaxWarningLength ? s : s[..(MaxWarningLength - 3)] + "...";
}
