using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Parsing;

internal static class DestinationPolicyParser
{
    private static readonly IReadOnlyList<string> LoadBalancers = ["LEAST_REQUEST", "ROUND_ROBIN", "PEAK_EWMA", "RANDOM"];

    private static readonly IReadOnlyList<string> OutlierFields =
    [
        "consecutive5xxErrors", "consecutiveGatewayErrors", "consecutiveLocalOriginFailures", "splitExternalLocalOriginErrors",
        "interval", "baseEjectionTime", "maxEjectionPercent",
    ];

    public static Resource? Parse(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        var host = spec.String("host", required: true);
        if (host is not null && (!ResourceParser.IsHostName(host) || host.StartsWith('*')))
        {
            spec.Error("host", $"'{host}' is not a service host name");
        }

        var lb = LoadBalancerKind.LeastRequest;
        if (spec.Map("loadBalancer") is { } lbMap)
        {
            lb = lbMap.Enum("simple", LoadBalancers, required: true) switch
            {
                "ROUND_ROBIN" => LoadBalancerKind.RoundRobin,
                "PEAK_EWMA" => LoadBalancerKind.PeakEwma,
                "RANDOM" => LoadBalancerKind.Random,
                _ => LoadBalancerKind.LeastRequest,
            };
            lbMap.Finish();
        }

        return new DestinationPolicyResource(meta, source, new DestinationPolicySpec(
            host ?? string.Empty,
            lb,
            ParseConnectionPool(spec.Map("connectionPool")),
            ParseOutlierDetection(spec.Map("outlierDetection")),
            ParseRetryBudget(spec.Map("retryBudget"))));
    }

    private static ConnectionPoolSpec ParseConnectionPool(YamlMap? pool)
    {
        var d = ConnectionPoolSpec.Default;
        if (pool is null)
        {
            return d;
        }

        var tcp = pool.Map("tcp");
        var http = pool.Map("http");
        var result = new ConnectionPoolSpec(
            Count(tcp, "maxConnections"),
            tcp?.Duration("connectTimeout", TimeSpan.FromMilliseconds(1), TimeSpan.FromMinutes(10)) ?? d.ConnectTimeout,
            Count(http, "http1MaxPendingRequests"),
            Count(http, "http2MaxRequests"),
            Count(http, "maxRequestsPerConnection"),
            http is null ? null : (int?)http.Integer("maxRetries", 0, int.MaxValue),
            http?.Duration("idleTimeout", TimeSpan.FromMilliseconds(1), TimeSpan.FromDays(1)) ?? d.IdleTimeout,
            TcpIdleTimeout(tcp) ?? d.TcpIdleTimeout);
        tcp?.Finish();
        http?.Finish();
        pool.Finish();
        return result;
    }

    /// <summary>Istio's connectionPool.tcp.idleTimeout: 0s turns it off (a stream may then sit idle for ever).</summary>
    private static TimeSpan? TcpIdleTimeout(YamlMap? tcp) =>
        tcp?.Duration("idleTimeout", TimeSpan.Zero, ConnectionPoolSpec.MaxTcpIdleTimeout) is { } timeout
            ? timeout == TimeSpan.Zero ? Timeout.InfiniteTimeSpan : timeout
            : null;

    private static OutlierDetectionSpec? ParseOutlierDetection(YamlMap? od)
    {
        if (od is null)
        {
            return null;
        }

        if (od.Bool("enabled") == false)
        {
            if (OutlierFields.Any(od.Has))
            {
                od.Error("enabled", "enabled: false turns outlier detection off, so the other outlierDetection fields would be ignored: remove them or the enabled: false");
            }

            od.Finish();

            return OutlierDetectionSpec.Disabled;
        }

        // Istio's defaults: 5 consecutive 5xx, 10 s interval, 30 s base ejection, at most 10 % ejected.
        var fiveXx = od.Has("consecutive5xxErrors") ? (int?)od.Integer("consecutive5xxErrors", 0, int.MaxValue) : 5;
        var split = od.Bool("splitExternalLocalOriginErrors") ?? false;
        var result = new OutlierDetectionSpec(
            fiveXx == 0 ? null : fiveXx,
            Count(od, "consecutiveGatewayErrors"),
            Count(od, "consecutiveLocalOriginFailures"),
            od.Duration("interval", TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1)) ?? TimeSpan.FromSeconds(10),
            od.Duration("baseEjectionTime", TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1)) ?? TimeSpan.FromSeconds(30),
            (int)(od.Integer("maxEjectionPercent", 0, 100) ?? 10),
            split);
        od.Finish();
        if (result is { Consecutive5xxErrors: null, ConsecutiveGatewayErrors: null, ConsecutiveLocalOriginFailures: null, SplitExternalLocalOriginErrors: false })
        {
            od.Sink.Error(od.Node, od.Path, "ejects nothing: set consecutive5xxErrors, consecutiveGatewayErrors or consecutiveLocalOriginFailures above 0");
        }
        else if (result is { ConsecutiveLocalOriginFailures: not null, SplitExternalLocalOriginErrors: false })
        {
            // Istio and Envoy accept this silently, and the threshold is then never used: local-origin
            // failures count as 503/504 toward the 5xx and gateway thresholds instead. A warning rather than
            // an error, because configs written for Istio are valid there; with no 5xx or gateway threshold
            // either, the policy ejects nothing, which the warning says.
            var reason = "has effect only with splitExternalLocalOriginErrors: true; without it connect failures, resets and timeouts count as 503/504 toward consecutive5xxErrors and consecutiveGatewayErrors";
            if (result is { Consecutive5xxErrors: null, ConsecutiveGatewayErrors: null })
            {
                reason += ", and this outlierDetection ejects nothing";
            }

            od.Sink.Warning(od.Find("consecutiveLocalOriginFailures"), od.Child("consecutiveLocalOriginFailures"), reason);
        }

        return result;
    }

    private static RetryBudgetSpec ParseRetryBudget(YamlMap? budget)
    {
        if (budget is null)
        {
            return RetryBudgetSpec.Default;
        }

        var percent = budget.Number("percent", 0, 100) ?? RetryBudgetSpec.Default.Percent;
        var concurrency = (int?)budget.Integer("minRetryConcurrency", 0, int.MaxValue);
        var perSecond = (int?)budget.Integer("minRetriesPerSecond", 0, int.MaxValue);
        budget.Finish();
        if (concurrency is not null && perSecond is not null)
        {
            budget.Error("minRetriesPerSecond", "set minRetryConcurrency or minRetriesPerSecond, not both");
        }

        return concurrency is null && perSecond is null
            ? RetryBudgetSpec.Default with { Percent = percent }
            : new RetryBudgetSpec(percent, concurrency, perSecond);
    }

    /// <summary>A limit: absent means unlimited, 0 is refused because it would let nothing through.</summary>
    private static int? Count(YamlMap? map, string key) => (int?)map?.Integer(key, 1, int.MaxValue);
}
