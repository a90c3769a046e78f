namespace MeshProxy.Sidecar.Resilience;

/// <summary>A circuit breaker refused to open one more connection to the cluster.</summary>
internal sealed class UpstreamOverflowException(string cluster, int maxConnections)
    : Exception($"cluster {cluster} already has its maximum of {maxConnections} connections open");
