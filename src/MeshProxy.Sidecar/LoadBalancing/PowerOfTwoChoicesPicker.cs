using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>
/// Power of two choices: draw two endpoints (weighted), keep the better. "Better" is fewer requests in
/// flight (least-request, the default, as Envoy's LEAST_REQUEST) or the lower peak-EWMA cost, latency
/// times queue length (as linkerd and Finagle balance). Two draws avoid both the herd that a global
/// minimum attracts and the cost of scanning every endpoint; the result is exponentially better than
/// one random draw (Mitzenmacher).
/// </summary>
internal sealed class PowerOfTwoChoicesPicker(IReadOnlyList<UpstreamEndpoint> endpoints, bool byLatency) : IEndpointPicker
{
    private const int DrawsBeforeScan = 3;
    private readonly UpstreamEndpoint[] _rotation = WeightedRotation.Build(endpoints);
    private readonly int _distinct = endpoints.Count;

    public bool ByLatency { get; } = byLatency;

    public UpstreamEndpoint? Pick(UpstreamEndpoint? avoid = null)
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

        var now = Environment.TickCount64;
        var a = Draw(rotation, avoid, now, null);
        if (a is null)
        {
            return WeightedRotation.Scan(rotation, Random.Shared.Next(rotation.Length), avoid, now);
        }

        var b = Draw(rotation, avoid, now, a);
        if (b is null)
        {
            return a;
        }

        return ByLatency
            ? (b.Health.Cost(now) < a.Health.Cost(now) ? b : a)
            : (b.Health.Active < a.Health.Active ? b : a);
    }

    /// <summary>
    /// A usable endpoint other than <paramref name="other"/>: a few random draws, then a walk along the
    /// rotation from a random place; null only if there is none. The walk matters: with two endpoints the
    /// second draw hits the first one again half of the time (three times in a row one pick in eight, far
    /// more with unequal weights), and giving up then would hand back the first draw uncompared.
    /// </summary>
    private static UpstreamEndpoint? Draw(UpstreamEndpoint[] rotation, UpstreamEndpoint? avoid, long now, UpstreamEndpoint? other)
    {
        for (var i = 0; i < DrawsBeforeScan; i++)
        {
            var e = rotation[Random.Shared.Next(rotation.Length)];
            if (!ReferenceEquals(e, other) && WeightedRotation.Usable(e, avoid, now))
            {
                return e;
            }
        }

        var start = Random.Shared.Next(rotation.Length);
        for (var i = 0; i < rotation.Length; i++)
        {
            var e = rotation[(start + i) % rotation.Length];
            if (!ReferenceEquals(e, other) && WeightedRotation.Usable(e, avoid, now))
            {
                return e;
            }
        }

        return null;
    }
}
