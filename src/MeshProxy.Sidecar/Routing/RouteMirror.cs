namespace MeshProxy.Sidecar.Routing;

/// <summary>
/// A rule's shadow destination (Istio's mirror and mirrorPercentage, Gateway API's RequestMirror): the cluster a copy of
/// the rule's requests goes to and the share of them copied. Compiled once per snapshot and held by the
/// <see cref="RouteRule"/>; a rule that mirrors nothing has none, so its requests pay one null check. What is done
/// with it is Mirroring/RequestMirror.cs's.
/// </summary>
internal sealed class RouteMirror(Cluster cluster, double percentage)
{
    public Cluster Cluster { get; } = cluster;

    /// <summary>0-100: a request is copied when a draw in [0, 100) falls below it (so 0 copies none, 100 every one).</summary>
    public double Percentage { get; } = percentage;
}
