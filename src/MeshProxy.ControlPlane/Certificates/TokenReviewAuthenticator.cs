using System.Net;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using k8s;
using k8s.Autorest;
using k8s.Models;
using MeshProxy.Identity.Bootstrap;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>Settings of <see cref="TokenReviewAuthenticator"/>.</summary>
internal sealed record TokenReviewOptions
{
    /// <summary>The audience the sidecar's projected token is minted for (the injector's <c>--token-audience</c>).</summary>
    public string Audience { get; init; } = "meshproxy";

    /// <summary>How long one review may take before the CSR is refused as UNAVAILABLE (the sidecar's own call allows 10 s).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Whether a CSR with a pod-bound token must come from that pod's IP (<see cref="PodBinding"/>); off
    /// (<c>--token-pod-address ignore</c>) only where something between pods and the control plane rewrites source
    /// addresses (kube-proxy's --masquerade-all).
    /// </summary>
    public bool CheckPeerAddress { get; init; } = true;
}

/// <summary>
/// Kubernetes mode's authenticator: the bearer token is the pod's projected service-account token, and the API
/// server says whose it is (authentication.k8s.io/v1 TokenReview, POST tokenreviews, with <c>spec.audiences</c> set
/// to ours). Only an answer that is authenticated, confirms our audience in <c>status.audiences</c> (a server that
/// ignored the audience is not trusted) and names a service account (<c>system:serviceaccount:&lt;ns&gt;:&lt;sa&gt;</c>)
/// becomes an identity; its pod comes from the <c>authentication.kubernetes.io/pod-name</c> extra. Nothing the
/// token itself says is believed: its claims are decoded only to name the pod in the log line of a refusal.
/// Every failure is a <see cref="WorkloadAuthenticationException"/>: UNAVAILABLE when the review could not be had
/// (unreachable, 5xx, 429, our own RBAC refused, an answer that is not a TokenReview), PERMISSION_DENIED when the
/// API server refused the token (forged, expired, another audience, its pod deleted) or the answer proves no
/// service account. No answer is cached: CSRs are rare (one per sidecar per half-life), and a fresh review sees a
/// deleted pod's token refused at once.
/// </summary>
internal sealed class TokenReviewAuthenticator(IKubernetes client, TokenReviewOptions options, TimeProvider time) : IWorkloadAuthenticator
{
    public const string PodNameExtra = "authentication.kubernetes.io/pod-name";
    public const string PodUidExtra = "authentication.kubernetes.io/pod-uid";
    private const string ServiceAccountPrefix = "system:serviceaccount:";

    public async ValueTask<WorkloadIdentity?> AuthenticateAsync(string bearerToken, CancellationToken cancellationToken)
    {
        var claimed = ClaimedBy(bearerToken);
        var review = new V1TokenReview
        {
            ApiVersion = "authentication.k8s.io/v1",
            Kind = "TokenReview",
            Spec = new V1TokenReviewSpec { Token = bearerToken, Audiences = [options.Audience] },
        };
        V1TokenReview answer;
        using var timeout = new CancellationTokenSource(options.Timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            answer = await client.AuthenticationV1.CreateTokenReviewAsync(review, cancellationToken: linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw Unavailable(claimed, $"no answer within {options.Timeout.TotalSeconds:0.#} s");
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.UnprocessableEntity)
        {
            // The API server would not even review it (a token too malformed for its validation): the token's fault.
            throw Denied(CertificateMetrics.TokenRejected, claimed, $"the API server refused to review the token: HTTP {(int)ex.Response.StatusCode} {StatusMessage(ex)}");
        }
        catch (HttpOperationException ex)
        {
            // 5xx, 429 (priority and fairness), 401/403 (this control plane's own credentials or RBAC): not the
            // caller's fault, and it may pass.
            throw Unavailable(claimed, $"HTTP {(int)ex.Response.StatusCode} {StatusMessage(ex)}");
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException or KubernetesException
            or JsonException or System.Runtime.Serialization.SerializationException or FormatException or InvalidOperationException or NotSupportedException)
        {
            // Unreachable, cut, timed out, or an answer the client could not read as a TokenReview: nothing is proven
            // either way, so the sidecar is told to come back rather than that its token is bad.
            throw Unavailable(claimed, ex.InnerException is { } inner ? $"{ex.Message} ({inner.Message})" : ex.Message);
        }

        return Interpret(answer, options.Audience, claimed);
    }

    /// <summary>The identity an answer proves, or the refusal it amounts to. Pure: tests feed it answers directly.</summary>
    internal static WorkloadIdentity Interpret(V1TokenReview? answer, string audience, string claimed)
    {
        var status = answer?.Status ?? throw Unavailable(claimed, "the answer has no status");
        if (status.Authenticated != true)
        {
            throw Denied(CertificateMetrics.TokenRejected, claimed,
                $"the API server did not authenticate the token: {(string.IsNullOrEmpty(status.Error) ? "no reason given" : Printable(status.Error))}");
        }

        if (status.Audiences is null || !status.Audiences.Contains(audience, StringComparer.Ordinal))
        {
            throw Denied(CertificateMetrics.TokenAudienceMismatch, claimed,
                $"the API server did not confirm audience '{audience}' (status.audiences [{string.Join(", ", status.Audiences ?? [])}]): mount a projected service-account token with that audience");
        }

        var username = status.User?.Username ?? string.Empty;
        var parts = username.StartsWith(ServiceAccountPrefix, StringComparison.Ordinal) ? username[ServiceAccountPrefix.Length..].Split(':') : [];
        if (parts is not [{ Length: > 0 } ns, { Length: > 0 } serviceAccount])
        {
            throw Denied(CertificateMetrics.NotAServiceAccount, claimed, $"the token belongs to '{Printable(username)}', not to a service account");
        }

        var pod = Extra(status.User, PodNameExtra);
        return new WorkloadIdentity(ns, serviceAccount) { Pod = pod, PodUid = pod is null ? null : Extra(status.User, PodUidExtra) };

        static string? Extra(V1UserInfo? user, string key) =>
            user?.Extra is { } extra && extra.TryGetValue(key, out var values) && values is [{ Length: > 0 } value, ..] ? value : null;
    }

    /// <summary>
    /// Who the token says it is, unverified, for log lines only: a projected service-account token is a JWT whose
    /// payload names its namespace, service account and pod under <c>kubernetes.io</c>. Anything else (not a JWT,
    /// bad base64, bad JSON, other shapes) is described as such; nothing here throws.
    /// </summary>
    internal static string ClaimedBy(string token)
    {
        const string Unreadable = "a token that is not a Kubernetes service-account JWT";
        var parts = token.Split('.');
        if (parts.Length != 3 || parts[1].Length is 0 or > 16 * 1024)
        {
            return Unreadable;
        }

        var payload = parts[1].Replace('-', '+').Replace('_', '/');
        payload = payload.PadRight(payload.Length + ((4 - (payload.Length % 4)) % 4), '=');
        var bytes = new byte[payload.Length];
        if (!Convert.TryFromBase64String(payload, bytes, out var length))
        {
            return Unreadable;
        }

        try
        {
            using var json = JsonDocument.Parse(bytes.AsMemory(0, length));
            if (json.RootElement.ValueKind != JsonValueKind.Object ||
                !json.RootElement.TryGetProperty("kubernetes.io", out var kube) || kube.ValueKind != JsonValueKind.Object)
            {
                return Unreadable;
            }

            var ns = Text(kube, "namespace");
            var serviceAccount = kube.TryGetProperty("serviceaccount", out var sa) ? Text(sa, "name") : "?";
            var pod = kube.TryGetProperty("pod", out var p) ? Text(p, "name") : null;
            return pod is null
                ? $"service account {ns}/{serviceAccount} (claimed by the token, unverified)"
                : $"pod {ns}/{pod}, service account {ns}/{serviceAccount} (claimed by the token, unverified)";
        }
        catch (JsonException)
        {
            return Unreadable;
        }

        static string Text(JsonElement parent, string name) =>
            parent.ValueKind == JsonValueKind.Object && parent.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
                ? Printable(value.GetString()!)
                : "?";
    }

    private static WorkloadAuthenticationException Denied(string reason, string claimed, string message) =>
        new(StatusCode.PermissionDenied, reason, claimed, message);

    private static WorkloadAuthenticationException Unavailable(string claimed, string detail) =>
        new(StatusCode.Unavailable, CertificateMetrics.TokenReviewUnavailable, claimed, $"the token could not be reviewed now (TokenReview: {detail}); retry");

    private static string StatusMessage(HttpOperationException ex)
    {
        // The API server answers errors with a Status object; its message says why. The body is untrusted text.
        try
        {
            using var json = JsonDocument.Parse(ex.Response.Content ?? string.Empty);
            return json.RootElement.ValueKind == JsonValueKind.Object && json.RootElement.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String
                ? Printable(m.GetString()!)
                : ex.Response.ReasonPhrase ?? string.Empty;
        }
        catch (JsonException)
        {
            return ex.Response.ReasonPhrase ?? string.Empty;
        }
    }

    /// <summary>Untrusted text bound for a log line or a gRPC message: printable characters only, and not much of it.</summary>
    private static string Printable(string text)
    {
        var builder = new StringBuilder(Math.Min(text.Length, 256));
        foreach (var c in text.AsSpan(0, Math.Min(text.Length, 256)))
        {
            builder.Append(char.IsControl(c) ? '?' : c);
        }

        return builder.ToString();
    }
}
