using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>Weighted round robin: one interlocked increment and an index; ejected endpoints are stepped over.</summary>
internal sealed class RoundRobinPicker(IReadOnlyList<UpstreamEndpoint> endpoints) : IEndpointPicker
{
    private readonly UpstreamEndpoint[] _rotation = WeightedRotation.Build(endpoints);
    private int _next = -1;

    public UpstreamEndpoint? Pick(UpstreamEndpoint? avoid = null)
    {
        var rotation = _rotation;
        if (rotation.Length == 0)
        {
            return null;
        }

        var n = (int)((uint)Interlocked.Increment(ref _next) % (uint)rotation.Length);
        var candidate = rotation[n];
        var now = Environment.TickCount64;
        return WeightedRotation.Usable(candidate, avoid, now) || rotation.Length == 1
            ? candidate
            : WeightedRotation.Scan(rotation, n, avoid, now);
    }
}

/// <summary>A weighted random draw.</summary>
internal sealed class RandomPicker(IReadOnlyList<UpstreamEndpoint> endpoints) : IEndpointPicker
{
    private readonly UpstreamEndpoint[] _rotation = WeightedRotation.Build(endpoints);

    public UpstreamEndpoint? Pick(UpstreamEndpoint? avoid = null)
    {
        var rotation = _rotation;
        if (rotation.Length == 0)
        {
            return null;
        }

        var n = Random.Shared.Next(rotation.Length);
        var now = Environment.TickCount64;
        return WeightedRotation.Usable(rotation[n], avoid, now) || rotation.Length == 1
            ? rotation[n]
            : WeightedRotation.Scan(rotation, n, avoid, now);
    }
}
