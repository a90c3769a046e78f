using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>Chooses the endpoint for one attempt.</summary>
internal interface IEndpointPicker
{
    /// <summary>Null when the cluster has no endpoint at all.</summary>
    UpstreamEndpoint? Pick();
}

/// <summary>
/// Weighted round robin: each endpoint appears in the rotation as often as its weight (after dividing
/// all weights by their greatest common divisor), so picking is one interlocked increment and an index.
/// </summary>
internal sealed class RoundRobinPicker : IEndpointPicker
{
    private const int MaxRotationLength = 4096;
    private readonly UpstreamEndpoint[] _rotation;
    private int _next = -1;

    public RoundRobinPicker(IReadOnlyList<UpstreamEndpoint> endpoints)
    {
        _rotation = BuildRotation(endpoints);
    }

    public UpstreamEndpoint? Pick()
    {
        var rotation = _rotation;
        if (rotation.Length == 0)
        {
            return null;
        }

        var n = (uint)Interlocked.Increment(ref _next);
        return rotation[n % (uint)rotation.Length];
    }

    private static UpstreamEndpoint[] BuildRotation(IReadOnlyList<UpstreamEndpoint> endpoints)
    {
        if (endpoints.Count == 0)
        {
            return [];
        }

        var gcd = endpoints.Select(e => e.Weight).Aggregate(Gcd);
        var total = endpoints.Sum(e => (long)(e.Weight / gcd));
        if (total > MaxRotationLength)
        {
            // Weights too fine-grained to expand: fall back to plain rotation rather than use megabytes.
            return [.. endpoints];
        }

        // Interleave rather than repeat (a,a,a,b): spreads a heavy endpoint's turns across the cycle.
        var remaining = endpoints.Select(e => e.Weight / gcd).ToArray();
        var rotation = new List<UpstreamEndpoint>((int)total);
        while (rotation.Count < total)
        {
            for (var i = 0; i < endpoints.Count; i++)
            {
                if (remaining[i] > 0)
                {
                    rotation.Add(endpoints[i]);
                    remaining[i]--;
                }
            }
        }

        return [.. rotation];
    }

    private static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);
}
