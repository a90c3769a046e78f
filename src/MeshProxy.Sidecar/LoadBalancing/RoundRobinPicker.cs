using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>Weighted round robin: one interlocked increment and an index; ejected endpoints are stepped over.</summary>
internal sealed class RoundRobinPicker(IReadOnlyList<UpstreamEndpoint> endpoints) : IEndpointPicker
{
    private readonly UpstreamEndpoint[] _rotation = WeightedRotation.Build(endpoints);
    private int _next = -1;

    public UpstreamEndpoint? Pick(long nowMs, UpstreamEndpoint? avoid = null)
    {
        var rotation = _rotation;
        if (rotation.Length == 0)
        {
            return null;
        }

        var n = (int)((uint)Interlocked.Increment(ref _next) % (uint)rotation.Length);
        var candidate = rotation[n];
        return WeightedRotation.Usable(candidate, avoid, nowMs) || rotation.Length == 1
            ? candidate
            : WeightedRotation.Scan(rotation, n, avoid, nowMs);
    }
}

/// <summary>A weighted random draw.</summary>
internal sealed class RandomPicker(IReadOnlyList<UpstreamEndpoint> endpoints) : IEndpointPicker
{
    private readonly UpstreamEndpoint[] _rotation = WeightedRotation.Build(endpoints);

    public UpstreamEndpoint? Pick(long nowMs, UpstreamEndpoint? avoid = null)
    {
        var rotation = _rotation;
        if (rotation.Length == 0)
        {
            return null;
        }

        var n = Random.Shared.Next(rotation.Length);
        return WeightedRotation.Usable(rotation[n], avoid, nowMs) || rotation.Length == 1
            ? rotation[n]
            : WeightedRotation.Scan(rotation, n, avoid, nowMs);
    }
}
