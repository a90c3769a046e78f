using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>
/// Power of two choices: draw two endpoints (weighted), keep the better. "Better" is fewer requests in
/// flight (least-request, the default, as Envoy's LEAST_REQUEST) or the lower peak-EWMA cost, latency
/// times queue length (as linkerd and Finagle balance). Two draws avoid both the herd that a global
/// minimum attracts and the cost of scanning every endpoint; the result is exponentially better than
/// one random draw (Mitzenmacher).
/// </summary>
/// <remarks>
/// <para>
/// Unequal weights: the comparison is per unit of weight, so that under load requests in flight settle
/// in proportion to the weights and, endpoints being equally fast, so do the shares (Little's law).
/// Least-request compares active / weight (cross-multiplied, no division); peak EWMA compares
/// ewma x (1 + active / relative weight), relative to the lightest endpoint, the queue a new request
/// joins when an endpoint of weight w serves w times as many at once. The draws stay weighted: with the
/// comparison only levelling load per unit of weight, who is compared how often is what the shares
/// follow, and weighted draws make each endpoint's share its weight's (in a simulation with 60 requests
/// in flight, 3:1:1:1 gave the heavy one 49.6 % with weighted draws, 44.7 % with uniform ones; the
/// picker itself is checked in LoadBalancingTests). When every endpoint is idle the comparison ties
/// and the first, weighted, draw wins: shares follow the weights at low load too.
/// </para>
/// <para>
/// Envoy's (active + 1) / weight is not used as the comparison: it is the inverse of Envoy's effective
/// weight for its weighted scheduler, where the + 1 avoids a division by zero. In a pairwise comparison
/// the + 1 makes an idle heavy endpoint beat an idle light one every time (in the same simulation,
/// weights 3:1 at 0.3 requests in flight gave the heavy one 99 %, at 2 in flight 85 %), and weighted
/// draws on top favour it twice (5:1:1: 95 % instead of 71 %). With equal weights both forms order
/// endpoints as the unweighted comparison does, and the picker takes that path unchanged.
/// </para>
/// </remarks>
internal sealed class PowerOfTwoChoicesPicker(IReadOnlyList<UpstreamEndpoint> endpoints, bool byLatency) : IEndpointPicker
{
    private const int DrawsBeforeScan = 3;
    private readonly UpstreamEndpoint[] _rotation = WeightedRotation.Build(endpoints);
    private readonly int _distinct = endpoints.Count;

    /// <summary>All weights equal: the plain comparison, exactly as without weights.</summary>
    private readonly bool _uniform = endpoints.Count == 0 || endpoints.All(e => e.Weight == endpoints[0].Weight);

    /// <summary>The lightest weight: peak EWMA's queue is counted in units of it, so that weight 1 of 1 is the plain cost.</summary>
    private readonly double _minWeight = endpoints.Count == 0 ? 1 : endpoints.Min(e => e.Weight);

    public bool ByLatency { get; } = byLatency;

    public UpstreamEndpoint? Pick(long nowMs, UpstreamEndpoint? avoid = null)
    {
        var rotation = _rotation;
        if (rotation.Length == 0)
        {
            return null;
        }

        if (_distinct == 1)
        {
            return rotation[0];
        }

        var a = Draw(rotation, avoid, nowMs, null);
        if (a is null)
        {
            return WeightedRotation.Scan(rotation, Random.Shared.Next(rotation.Length), avoid, nowMs);
        }

        var b = Draw(rotation, avoid, nowMs, a);
        if (b is null)
        {
            return a;
        }

        if (_uniform)
        {
            return ByLatency
                ? (b.Health.Cost(nowMs) < a.Health.Cost(nowMs) ? b : a)
                : (b.Health.Active < a.Health.Active ? b : a);
        }

        // Ties go to the first draw, which is weighted: among idle endpoints the weights decide.
        return ByLatency
            ? (b.Health.Cost(nowMs, _minWeight / b.Weight) < a.Health.Cost(nowMs, _minWeight / a.Weight) ? b : a)
            : ((long)b.Health.Active * a.Weight < (long)a.Health.Active * b.Weight ? b : a);
    }

    /// <summary>
    /// A usable endpoint other than <paramref name="other"/>: a few random draws, then a walk along the
    /// rotation from a random place; null only if there is none. The walk matters: with two endpoints the
    /// second draw hits the first one again half of the time (three times in a row one pick in eight, far
    /// more with unequal weights), and giving up then would hand back the first draw uncompared.
    /// </summary>
    private static UpstreamEndpoint? Draw(UpstreamEndpoint[] rotation, UpstreamEndpoint? avoid, long nowMs, UpstreamEndpoint? other)
    {
        for (var i = 0; i < DrawsBeforeScan; i++)
        {
            var e = rotation[Random.Shared.Next(rotation.Length)];
            if (!ReferenceEquals(e, other) && WeightedRotation.Usable(e, avoid, nowMs))
            {
                return e;
            }
        }

        var start = Random.Shared.Next(rotation.Length);
        for (var i = 0; i < rotation.Length; i++)
        {
            var e = rotation[(start + i) % rotation.Length];
            if (!ReferenceEquals(e, other) && WeightedRotation.Usable(e, avoid, nowMs))
            {
                return e;
            }
        }

        return null;
    }
}
