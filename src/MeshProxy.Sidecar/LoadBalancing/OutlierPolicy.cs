using MeshProxy.Config.Resources;

namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>
/// Outlier detection thresholds. A null threshold is off. <see cref="ConsecutiveLocalOriginFailures"/>
/// is the effective one: null unless local-origin failures are split out (Envoy uses it only then), and
/// with the split on and the field unset, Envoy's default of 5 (Istio passes an unset field on as unset).
/// </summary>
internal sealed record OutlierPolicy(
    int? Consecutive5xx,
    int? ConsecutiveGatewayErrors,
    int? ConsecutiveLocalOriginFailures,
    TimeSpan Interval,
    TimeSpan BaseEjectionTime,
    TimeSpan MaxEjectionTime,
    int MaxEjectionPercent,
    bool SplitExternalLocalOriginErrors = false)
{
    /// <summary>Envoy's max_ejection_time default: however often an endpoint was ejected, it is tried again within 5 minutes.</summary>
    public static readonly TimeSpan DefaultMaxEjectionTime = TimeSpan.FromMinutes(5);

    /// <summary>Envoy's consecutive_local_origin_failure default, which applies when the split is on.</summary>
    public const int DefaultConsecutiveLocalOriginFailures = 5;

    /// <summary>
    /// Passive health for a destination whose DestinationPolicy writes no <c>outlierDetection</c> (or that has
    /// none): 5 connect failures in a row eject an endpoint for 30 s (x the ejection count, at most 5 min),
    /// at most half of the endpoints at once, on services with two endpoints or more. Connect failures only:
    /// they say the endpoint is not there, whereas resets, timeouts and 5xx may be the app's business, which
    /// an operator opts into judging by writing outlierDetection. 5 and 30 s are Envoy's
    /// consecutive_local_origin_failure and base_ejection_time defaults; with the default retries each of
    /// the 5 is retried on another endpoint, so a dead replica costs connects, not requests. 50 % instead of
    /// Istio's 10 % because a refused connection is unambiguous, while half keeps Envoy's panic threshold's
    /// spirit (never judge the majority of a service bad); it still ejects one of two. Off with
    /// <c>outlierDetection: { enabled: false }</c>.
    /// </summary>
    public static OutlierPolicy Default { get; } = new(
        null, null, DefaultConsecutiveLocalOriginFailures, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), DefaultMaxEjectionTime, 50,
        SplitExternalLocalOriginErrors: true) { IsDefault = true };

    /// <summary>The default detector (<see cref="Default"/>): counts connect failures only, on clusters of two endpoints or more.</summary>
    public bool IsDefault { get; private init; }

    public static OutlierPolicy From(OutlierDetectionSpec spec) => new(
        spec.Consecutive5xxErrors,
        spec.ConsecutiveGatewayErrors,
        spec.SplitExternalLocalOriginErrors ? spec.ConsecutiveLocalOriginFailures ?? DefaultConsecutiveLocalOriginFailures : null,
        spec.Interval,
        spec.BaseEjectionTime,
        spec.BaseEjectionTime > DefaultMaxEjectionTime ? spec.BaseEjectionTime : DefaultMaxEjectionTime,
        spec.MaxEjectionPercent,
        spec.SplitExternalLocalOriginErrors);

    /// <summary>At most this many of <paramref name="endpoints"/> may be ejected at once; at least one unless the percentage is 0 (as Envoy).</summary>
    public int MaxEjected(int endpoints) =>
        MaxEjectionPercent == 0 ? 0 : Math.Max(1, endpoints * MaxEjectionPercent / 100);
}
