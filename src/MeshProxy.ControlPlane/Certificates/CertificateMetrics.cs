using System.Collections.Frozen;
using MeshProxy.Identity;
using MeshProxy.Metrics;
using Prometheus;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>The CA's figures on the control plane's /metrics.</summary>
internal sealed class CertificateMetrics
{
    public const string MissingToken = "missing_token";
    public const string InvalidToken = "invalid_token";
    public const string InvalidRequest = "invalid_request";

    // Kubernetes mode (TokenReviewAuthenticator).
    public const string TokenRejected = "token_rejected";
    public const string TokenAudienceMismatch = "token_audience_mismatch";
    public const string NotAServiceAccount = "not_a_service_account";
    public const string TokenReviewUnavailable = "token_review_unavailable";

    // Kubernetes mode (PodBinding): a pod-bound token presented by another caller, or a pod the informer has not seen yet.
    public const string PodMismatch = "pod_mismatch";
    public const string PodUnknown = "pod_unknown";

    // Kubernetes mode: this replica could not read the CA Secret for too long (KubernetesCa.Unavailable).
    public const string CaUnavailable = "ca_unavailable";

    // One interned string per reason, so that counting a refusal never allocates a label.
    private static readonly FrozenDictionary<SigningRefusal, string> Reasons = Enum.GetValues<SigningRefusal>().ToFrozenDictionary(r => r, SnakeCase);

    private readonly Counter _refusals;

    public CertificateMetrics(MetricsRegistry registry, MeshCertificateAuthority authority)
    {
        Issued = registry.Factory.CreateCounter("meshproxy_controlplane_certificates_issued_total", "Workload certificates the CA signed.");
        _refusals = registry.Factory.CreateCounter("meshproxy_controlplane_certificate_refusals_total", "Certificate requests refused, by reason.", ["reason"]);
        registry.CallbackGauge("meshproxy_controlplane_ca_expiry_timestamp_seconds", "When the CA's signing certificate expires (Unix time).",
            () => authority.Current.Authority.SigningCertificate.NotAfter.ToUniversalTime().Subtract(DateTime.UnixEpoch).TotalSeconds);
        registry.CallbackGauge("meshproxy_controlplane_trust_bundle_roots", "Roots in the published trust bundle (2 during a root rotation).",
            () => authority.Current.Bundle.Roots.Length);
    }

    public Counter Issued { get; }

    public static string ReasonOf(SigningRefusal reason) => Reasons[reason];

    public void Refused(string reason) => _refusals.WithLabels(reason).Inc();

    private static string SnakeCase(SigningRefusal reason)
    {
        var name = reason.ToString();
        var builder = new System.Text.StringBuilder(name.Length + 4);
        foreach (var c in name)
        {
            if (char.IsUpper(c) && builder.Length > 0)
            {
                builder.Append('_');
            }

            builder.Append(char.ToLowerInvariant(c));
        }

        return builder.ToString();
    }
}
