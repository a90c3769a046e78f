using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>Chooses the endpoint for one attempt.</summary>
internal interface IEndpointPicker
{
    /// <summary>
    /// An endpoint that is not ejected, other than <paramref name="avoid"/> (the one a retry just
    /// failed on) when another is usable. If every endpoint is ejected, any endpoint: Envoy's panic
    /// mode, on the grounds that a request tried is better than a request refused when the detector
    /// has judged the whole cluster. Null only when the cluster has no endpoint at all.
    /// </summary>
    /// <param name="nowMs">The attempt loop's clock (Resilience/ResilienceClock.cs), read once per attempt: ejections and latency decay are judged at that moment.</param>
    UpstreamEndpoint? Pick(long nowMs, UpstreamEndpoint? avoid = null);
}

internal static class EndpointPickers
{
    public static IEndpointPicker Create(LoadBalancerKind kind, IReadOnlyList<UpstreamEndpoint> endpoints) => kind switch
    {
        LoadBalancerKind.RoundRobin => new RoundRobinPicker(endpoints),
        LoadBalancerKind.PeakEwma => new PowerOfTwoChoicesPicker(endpoints, byLatency: true),
        LoadBalancerKind.Random => new RandomPicker(endpoints),
        _ => new PowerOfTwoChoicesPicker(endpoints, byLatency: false),
    };
}

/// <summary>
/// Endpoint weights, expanded: each endpoint appears as often as its weight (after dividing all weights
/// by their greatest common divisor), interleaved. A uniform draw from it is a weighted draw, and a
/// walk along it is weighted round robin.
/// </summary>
internal static class WeightedRotation
{
    private const int MaxLength = 4096;

    public static UpstreamEndpoint[] Build(IReadOnlyList<UpstreamEndpoint> endpoints)
    {
        if (endpoints.Count == 0)
        {
            return [];
        }

        var gcd = endpoints.Select(e => e.Weight).Aggregate(Gcd);
        var total = endpoints.Sum(e => (long)(e.Weight / gcd));
        if (total > MaxLength)
        {
            // Weights too fine-grained to expand: fall back to equal shares rather than use megabytes.
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

    /// <summary>
    /// The first usable endpoint walking from <paramref name="start"/>: not ejected and not
    /// <paramref name="avoid"/>; else not ejected; else (panic) not <paramref name="avoid"/>; else any.
    /// </summary>
    public static UpstreamEndpoint Scan(UpstreamEndpoint[] rotation, int start, UpstreamEndpoint? avoid, long nowMs)
    {
        UpstreamEndpoint? healthyAvoided = null;
        for (var i = 0; i < rotation.Length; i++)
        {
            var e = rotation[(start + i) % rotation.Length];
            if (!e.Health.IsEjected(nowMs))
            {
                if (!ReferenceEquals(e, avoid))
                {
                    return e;
                }

                healthyAvoided = e;
            }
        }

        if (healthyAvoided is not null)
        {
            return healthyAvoided;
        }

        var first = rotation[start % rotation.Length];
        if (ReferenceEquals(first, avoid))
        {
            for (var i = 1; i < rotation.Length; i++)
            {
                var e = rotation[(start + i) % rotation.Length];
                if (!ReferenceEquals(e, avoid))
                {
                    return e;
                }
            }
        }

        return first;
    }

    public static bool Usable(UpstreamEndpoint e, UpstreamEndpoint? avoid, long nowMs) =>
        !ReferenceEquals(e, avoid) && !e.Health.IsEjected(nowMs);

    private static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);
}
