using System.Net;
using Grpc.Core;
using k8s.Models;
using MeshProxy.Identity.Bootstrap;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// Kubernetes mode: a token bound to a pod (TokenReview's <c>authentication.kubernetes.io/pod-name</c> and
/// <c>pod-uid</c> extras) earns an SVID only for a caller that is that pod. The API server has already checked that the
/// pod exists with that uid (it refuses a token of a deleted or replaced pod); what it cannot know is who presents the
/// token. So the pod, as the Kubernetes source's pod informer holds it (no RBAC beyond its list/watch, no request per
/// CSR), must
/// <list type="bullet">
/// <item>be the token's pod (same uid) and run as the token's service account;</item>
/// <item>not have finished (phase Succeeded or Failed). Pending is accepted: a native sidecar (an init container) asks for
/// its first certificate before the app's containers start, while the pod is still Pending;</item>
/// <item>have the CSR's peer address among its pod IPs, unless it uses the host's network (its IP is then the node's,
/// shared by every such pod, and proves nothing). A pod's call to the control plane's Service keeps its source address:
/// kube-proxy (iptables or IPVS) rewrites the destination only, and masquerades only traffic from outside the cluster
/// CIDR, or everything with <c>--masquerade-all</c>, for which <c>--token-pod-address ignore</c>
/// (<see cref="TokenReviewOptions.CheckPeerAddress"/>) turns this last check off.</item>
/// </list>
/// A token taken from a pod's volume therefore serves no other pod. A pod the informer has not seen yet (or not with
/// that uid, or with no IP yet) is UNAVAILABLE: the informer is about to catch up and the sidecar retries. A token not
/// bound to a pod (a TokenRequest without a bound object) is not checked here.
/// </summary>
internal sealed class PodBinding(Func<string, string, V1Pod?> pods, TokenReviewOptions options)
{
    /// <exception cref="WorkloadAuthenticationException">PERMISSION_DENIED (reason <c>pod_mismatch</c>) or UNAVAILABLE.</exception>
    public void Check(WorkloadIdentity workload, IPAddress? peer)
    {
        if (workload.Pod is not { } name)
        {
            return;
        }

        var who = $"pod {workload.Namespace}/{name}";
        if (pods(workload.Namespace, name) is not { } pod || (workload.PodUid is { } uid && pod.Metadata?.Uid != uid))
        {
            throw Unavailable(workload, $"{who} (uid {workload.PodUid ?? "?"}) is not known to this control plane yet; retry");
        }

        if (pod.Spec?.ServiceAccountName is { } account && account != workload.ServiceAccount)
        {
            throw Denied(workload, $"{who} runs as service account {account}, not {workload.ServiceAccount}");
        }

        if (pod.Status?.Phase is "Succeeded" or "Failed")
        {
            throw Denied(workload, $"{who} has finished (phase {pod.Status.Phase})");
        }

        if (!options.CheckPeerAddress || pod.Spec?.HostNetwork == true)
        {
            return;
        }

        var addresses = (pod.Status?.PodIPs?.Select(p => p.Ip) ?? []).Append(pod.Status?.PodIP).OfType<string>().Distinct(StringComparer.Ordinal).ToList();
        if (addresses.Count == 0)
        {
            throw Unavailable(workload, $"{who} has no IP yet, so the caller cannot be matched to it; retry");
        }

        var caller = peer is { IsIPv4MappedToIPv6: true } ? peer.MapToIPv4() : peer;
        if (caller is null || !addresses.Any(a => IPAddress.TryParse(a, out var ip) && ip.Equals(caller)))
        {
            throw Denied(workload, $"the token is bound to {who} ({string.Join(", ", addresses)}) but the request came from {caller?.ToString() ?? "an unknown address"}: a pod's token serves that pod only");
        }
    }

    private static WorkloadAuthenticationException Denied(WorkloadIdentity workload, string message) =>
        new(StatusCode.PermissionDenied, CertificateMetrics.PodMismatch, workload.ToString(), message);

    private static WorkloadAuthenticationException Unavailable(WorkloadIdentity workload, string message) =>
        new(StatusCode.Unavailable, CertificateMetrics.PodUnknown, workload.ToString(), message);
}
