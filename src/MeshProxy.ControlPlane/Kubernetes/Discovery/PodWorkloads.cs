using System.Net;
using k8s.Models;
using MeshProxy.ControlPlane.Snapshots;

namespace MeshProxy.ControlPlane.Kubernetes.Discovery;

/// <summary>A Pod as the workload its sidecar serves: the name of what owns it, its namespace, service account and labels.</summary>
internal static class PodWorkloads
{
    public static Workload From(V1Pod pod) => new(
        WorkloadName(pod),
        pod.Metadata.NamespaceProperty ?? "default",
        string.IsNullOrEmpty(pod.Spec?.ServiceAccountName) ? "default" : pod.Spec.ServiceAccountName,
        new Dictionary<string, string>(pod.Metadata.Labels ?? new Dictionary<string, string>(), StringComparer.Ordinal));

    /// <summary>
    /// The Deployment's name for a Deployment's pod (its ReplicaSet's name less the pod-template-hash), the owner's
    /// name for other controllers (StatefulSet, DaemonSet, Job), else the Pod's own: what a Sidecar resource's
    /// workload.name is written against.
    /// </summary>
    public static string WorkloadName(V1Pod pod)
    {
        var owner = pod.Metadata.OwnerReferences?.FirstOrDefault(o => o.Controller == true) ?? pod.Metadata.OwnerReferences?.FirstOrDefault();
        if (owner is null)
        {
            return pod.Metadata.Name;
        }

        if (owner.Kind == "ReplicaSet" && pod.Metadata.Labels?.TryGetValue("pod-template-hash", out var hash) == true &&
            owner.Name.EndsWith("-" + hash, StringComparison.Ordinal))
        {
            return owner.Name[..^(hash.Length + 1)];
        }

        return owner.Name;
    }

    /// <summary>True when the address is one of the Pod's IPs (a sidecar connects from its pod's network namespace).</summary>
    public static bool HasAddress(V1Pod pod, IPAddress address)
    {
        var ip = address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        var ips = (pod.Status?.PodIPs?.Select(p => p.Ip) ?? []).Append(pod.Status?.PodIP);
        return ips.Any(p => p is not null && IPAddress.TryParse(p, out var candidate) && candidate.Equals(ip));
    }

    /// <summary>
    /// A Pod whose container may be running: not being deleted, phase Running, and its Ready condition not False (the
    /// kubelet turns it False as soon as a container dies or fails its readiness probe).
    /// </summary>
    public static bool IsAlive(V1Pod pod) =>
        pod.Metadata.DeletionTimestamp is null
        && pod.Status?.Phase == "Running"
        && pod.Status.Conditions?.FirstOrDefault(c => c.Type == "Ready") is not { Status: "False" };
}
