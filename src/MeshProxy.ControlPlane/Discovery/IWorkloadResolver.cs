using System.Net;
using MeshProxy.Api.V1;
using MeshProxy.ControlPlane.Snapshots;

namespace MeshProxy.ControlPlane.Discovery;

/// <summary>
/// Who a connecting sidecar serves, from a source that knows (its Pod in the Kubernetes API), instead of what its
/// Node claims. Without one (the directory source) the Node is taken as is, as before.
/// </summary>
internal interface IWorkloadResolver
{
    WorkloadResolution Resolve(Node node, IPAddress? remoteAddress);
}

/// <summary>The workload, or why not; <see cref="Retry"/>: the answer may change (a Pod not seen yet), so UNAVAILABLE rather than PERMISSION_DENIED.</summary>
internal sealed record WorkloadResolution(Workload? Workload, string? Refusal, bool Retry = false)
{
    /// <summary>The name of the Pod the sidecar was resolved to (a credential bound to a pod must name this one).</summary>
    public string? Pod { get; init; }
}
