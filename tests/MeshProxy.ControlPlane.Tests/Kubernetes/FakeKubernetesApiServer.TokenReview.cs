using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// TEST INFRASTRUCTURE: the fake API server's token authority. It mints service-account tokens as the API server's
/// TokenRequest does for a pod's projected volume (a JWT signed by its own key: <c>aud</c>, <c>exp</c>, <c>iat</c>,
/// <c>nbf</c>, <c>iss</c>, <c>jti</c>, <c>sub</c> <c>system:serviceaccount:&lt;ns&gt;:&lt;sa&gt;</c>, and under
/// <c>kubernetes.io</c> the namespace, service account and bound pod), and answers
/// <c>POST /apis/authentication.k8s.io/v1/tokenreviews</c> as the API documents TokenReview: 201 with the review
/// echoed back; <c>status.authenticated</c>, <c>status.user</c> (username, uid, groups, and for a pod-bound token
/// <c>extra</c> <c>authentication.kubernetes.io/pod-name</c>, <c>pod-uid</c> and <c>credential-id</c>) and
/// <c>status.audiences</c> (the intersection of <c>spec.audiences</c>, or the API server's own audience when empty,
/// with the token's); a token it did not sign, an expired one, one for none of the asked audiences, or one whose pod
/// is gone (or was replaced under the same name) gets <c>authenticated</c> unset, an empty user and <c>status.error</c>
/// (the API server's wording, approximated). An empty token is 400, as the API server answers.
/// Test hooks: <see cref="TokenClock"/> (when tokens expire), <see cref="TokenReviewFailure"/> (answer every review
/// with that HTTP status), <see cref="HoldTokenReviews"/> (answer none until a task completes), <see cref="RewriteTokenReview"/> (rewrite the answer's text: a server that ignores
/// audiences, a broken body); <see cref="SetReachable"/> cuts reviews too.
/// </summary>
internal sealed partial class FakeKubernetesApiServer
{
    public const string ApiServerAudience = "https://kubernetes.default.svc.cluster.local";
    private const string TokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews";

    // The service-account signing key (the API server's --service-account-signing-key-file).
    private readonly ECDsa _tokenKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private int _tokenReviews;

    /// <summary>The clock tokens are minted and checked on.</summary>
    public TimeProvider TokenClock { get; set; } = TimeProvider.System;

    /// <summary>When set, every TokenReview is answered with this HTTP status and a Status object (503, 500, 429...).</summary>
    public int? TokenReviewFailure { get; set; }

    /// <summary>When set, rewrites the text of every TokenReview answer before it is sent.</summary>
    public Func<string, string>? RewriteTokenReview { get; set; }

    /// <summary>When set, every TokenReview waits for this task before it is answered (an API server that hangs).</summary>
    public Task? HoldTokenReviews { get; set; }

    /// <summary>TokenReviews received (any outcome).</summary>
    public int TokenReviews => Volatile.Read(ref _tokenReviews);

    /// <summary>
    /// A projected service-account token, as kubelet gets it through TokenRequest for a pod's volume. With
    /// <paramref name="pod"/> the token is bound to that Pod (which must exist and run as that service account),
    /// and stops being valid when the Pod is deleted.
    /// </summary>
    public string CreateServiceAccountToken(string ns, string serviceAccount, string? pod = null, string[]? audiences = null, TimeSpan? lifetime = null)
    {
        var now = TokenClock.GetUtcNow().ToUnixTimeSeconds();
        var kube = new JsonObject
        {
            ["namespace"] = ns,
            ["serviceaccount"] = new JsonObject { ["name"] = serviceAccount, ["uid"] = ServiceAccountUid(ns, serviceAccount) },
        };
        if (pod is not null)
        {
            var podObject = Get("v1", "Pod", ns, pod) ?? throw new ArgumentException($"pod {ns}/{pod} does not exist", nameof(pod));
            if (podObject["spec"]?["serviceAccountName"]?.GetValue<string>() != serviceAccount)
            {
                // The API server's refusal for such a TokenRequest.
                throw new ArgumentException($"cannot bind token for serviceaccount \"{serviceAccount}\" to pod running with different serviceaccount name.");
            }

            kube["pod"] = new JsonObject { ["name"] = pod, ["uid"] = podObject["metadata"]!["uid"]!.GetValue<string>() };
        }

        var payload = new JsonObject
        {
            ["aud"] = new JsonArray([.. (audiences ?? ["meshproxy"]).Select(a => JsonValue.Create(a))]),
            ["exp"] = now + (long)(lifetime ?? TimeSpan.FromHours(1)).TotalSeconds,
            ["iat"] = now,
            ["iss"] = ApiServerAudience,
            ["jti"] = Guid.NewGuid().ToString(),
            ["kubernetes.io"] = kube,
            ["nbf"] = now,
            ["sub"] = $"system:serviceaccount:{ns}:{serviceAccount}",
        };
        var signed = $"{Base64Url("""{"alg":"ES256","kid":"fake-api-server"}"""u8)}.{Base64Url(Encoding.UTF8.GetBytes(payload.ToJsonString()))}";
        return $"{signed}.{Base64Url(_tokenKey.SignData(Encoding.ASCII.GetBytes(signed), HashAlgorithmName.SHA256))}";
    }

    private async Task<bool> TryServeTokenReviewAsync(HttpContext context)
    {
        if (context.Request.Path.Value?.TrimEnd('/') != TokenReviewPath)
        {
            return false;
        }

        if (context.Request.Method != "POST")
        {
            await StatusAsync(context, 405, "MethodNotAllowed", $"{context.Request.Method} is not supported on tokenreviews (create only)");
            return true;
        }

        Interlocked.Increment(ref _tokenReviews);
        if (HoldTokenReviews is { } hold)
        {
            await hold;
        }

        if (TokenReviewFailure is { } failure)
        {
            await StatusAsync(context, failure, failure == 429 ? "TooManyRequests" : "ServiceUnavailable", "the server is currently unable to handle the request");
            return true;
        }

        JsonObject review;
        try
        {
            review = (await JsonNode.ParseAsync(context.Request.Body))?.AsObject() ?? throw new JsonException("empty body");
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            await StatusAsync(context, 400, "BadRequest", $"the body is not a TokenReview: {ex.Message}");
            return true;
        }

        var spec = review["spec"] as JsonObject;
        if (spec?["token"] is not JsonValue tokenValue || !tokenValue.TryGetValue<string>(out var token) || token.Length == 0)
        {
            await StatusAsync(context, 400, "BadRequest", "token is required for TokenReview in authentication");
            return true;
        }

        var asked = spec["audiences"] is JsonArray a && a.Count > 0 ? [.. a.Select(x => x?.GetValue<string>() ?? string.Empty)] : new[] { ApiServerAudience };
        var answer = new JsonObject
        {
            ["kind"] = "TokenReview",
            ["apiVersion"] = "authentication.k8s.io/v1",
            ["metadata"] = new JsonObject { ["creationTimestamp"] = null },
            ["spec"] = spec.DeepClone(),
            ["status"] = Review(token, asked),
        };
        var text = answer.ToJsonString();
        if (RewriteTokenReview is { } rewrite)
        {
            text = rewrite(text);
        }

        context.Response.StatusCode = 201;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(text);
        return true;
    }

    /// <summary>The status of a review of <paramref name="token"/> for <paramref name="asked"/> audiences.</summary>
    private JsonObject Review(string token, string[] asked)
    {
        static JsonObject Refused(string reason) => new() { ["user"] = new JsonObject(), ["error"] = $"[invalid bearer token, {reason}]" };

        var parts = token.Split('.');
        JsonObject claims;
        try
        {
            if (parts.Length != 3 || !_tokenKey.VerifyData(Encoding.ASCII.GetBytes($"{parts[0]}.{parts[1]}"), FromBase64Url(parts[2]), HashAlgorithmName.SHA256))
            {
                return Refused("token lookup failed");
            }

            claims = JsonNode.Parse(FromBase64Url(parts[1]))!.AsObject();
        }
        catch (Exception ex) when (ex is FormatException or JsonException or InvalidOperationException)
        {
            return Refused("token lookup failed");
        }

        var now = TokenClock.GetUtcNow().ToUnixTimeSeconds();
        if (claims["exp"]!.GetValue<long>() < now)
        {
            return Refused("service account token has expired");
        }

        var tokenAudiences = claims["aud"]!.AsArray().Select(x => x!.GetValue<string>()).ToArray();
        var audiences = asked.Intersect(tokenAudiences, StringComparer.Ordinal).ToArray();
        if (audiences.Length == 0)
        {
            return Refused($"token audiences {Quoted(tokenAudiences)} is invalid for the target audiences {Quoted(asked)}");
        }

        var kube = claims["kubernetes.io"]!.AsObject();
        var ns = kube["namespace"]!.GetValue<string>();
        var serviceAccount = kube["serviceaccount"]!["name"]!.GetValue<string>();
        var extra = new JsonObject { ["authentication.kubernetes.io/credential-id"] = new JsonArray($"JTI={claims["jti"]!.GetValue<string>()}") };
        if (kube["pod"] is JsonObject pod)
        {
            var name = pod["name"]!.GetValue<string>();
            var uid = pod["uid"]!.GetValue<string>();
            var current = Get("v1", "Pod", ns, name);
            if (current is null)
            {
                return Refused($"pod \"{name}\" not found");
            }

            if (current["metadata"]!["uid"]!.GetValue<string>() != uid)
            {
                return Refused($"pod UID ({current["metadata"]!["uid"]!.GetValue<string>()}) does not match claim ({uid})");
            }

            extra["authentication.kubernetes.io/pod-name"] = new JsonArray(name);
            extra["authentication.kubernetes.io/pod-uid"] = new JsonArray(uid);
        }

        return new JsonObject
        {
            ["authenticated"] = true,
            ["user"] = new JsonObject
            {
                ["username"] = $"system:serviceaccount:{ns}:{serviceAccount}",
                ["uid"] = ServiceAccountUid(ns, serviceAccount),
                ["groups"] = new JsonArray("system:serviceaccounts", $"system:serviceaccounts:{ns}", "system:authenticated"),
                ["extra"] = extra,
            },
            ["audiences"] = new JsonArray([.. audiences.Select(x => JsonValue.Create(x))]),
        };
    }

    private static string ServiceAccountUid(string ns, string serviceAccount)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{ns}/{serviceAccount}"));
        return new Guid(hash.AsSpan(0, 16)).ToString();
    }

    private static string Quoted(string[] values) => "[" + string.Join(" ", values.Select(v => JsonSerializer.Serialize(v))) + "]";

    /// <summary>JWT's unpadded base64url (RFC 7515), for tests that take a token apart.</summary>
    internal static string Base64Url(ReadOnlySpan<byte> bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    internal static byte[] FromBase64Url(string text)
    {
        var base64 = text.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(base64.PadRight(base64.Length + ((4 - (base64.Length % 4)) % 4), '='));
    }
}
