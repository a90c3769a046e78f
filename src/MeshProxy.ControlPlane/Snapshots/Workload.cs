using MeshProxy.Api.V1;

namespace MeshProxy.ControlPlane.Snapshots;

/// <summary>Who a sidecar serves, as its Node says. Two sidecars of one workload get one shared snapshot.</summary>
internal sealed record Workload(string Name, string Namespace, string ServiceAccount, IReadOnlyDictionary<string, string> Labels)
{
    /// <summary>Everything selection depends on, as one string: the key of the snapshot cache.</summary>
    public string ScopeKey { get; } =
        $"{Namespace}/{Name}/{ServiceAccount}/{string.Join(",", Labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"))}";

    public static Workload FromNode(Node node) => new(
        node.Workload,
        string.IsNullOrEmpty(node.Namespace) ? "default" : node.Namespace,
        string.IsNullOrEmpty(node.ServiceAccount) ? "default" : node.ServiceAccount,
        new Dictionary<string, string>(node.Labels, StringComparer.Ordinal));
}
