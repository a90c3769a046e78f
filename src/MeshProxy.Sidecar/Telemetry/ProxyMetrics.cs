using MeshProxy.Metrics;
using MeshProxy.Sidecar.Configuration;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// The proxy's own health figures, under meshproxy_*. Only things that exist are exported; a new one
/// (retries, ejections, authorization decisions, certificate expiry) is one more field here created
/// from <see cref="Registry"/>, recorded where it happens.
/// </summary>
internal sealed class ProxyMetrics
{
    /// <summary>Config versions are few (one per push), but a bound keeps a flapping source from growing the exposition forever.</summary>
    private const int MaxConfigVersions = 64;

    private readonly GaugeFamily<LabelSet1> _configInfo;
    private readonly Gauge _configApplied;
    private readonly GaugeFamily<LabelSet1> _connectionsActive;
    private readonly CounterFamily<LabelSet1> _connectionsTotal;
    private readonly CounterFamily<LabelSet1> _connectFailures;
    private readonly Lock _configLock = new();
    private string? _currentVersion;

    // ---- Authorization (the inbound pipeline's authorization step) -------------------------------
    // Kept apart from the rest of the file: one family, created first, recorded by AuthorizationDecision.

    /// <summary>The policy label when no policy decided (no ALLOW policy applies, or none matched).</summary>
    public const string NoPolicy = "none";

    private readonly CounterFamily<LabelSet2> _authorizationDecisions;

    /// <summary>
    /// One decision: action "allow", "deny" or "would_deny" (a dry-run policy would have denied an allowed
    /// request), policy the namespace/name that decided or <see cref="NoPolicy"/>. Policy names come
    /// from configuration, so the label set is bounded by it; the strings are the snapshot's own
    /// instances, so recording allocates nothing.
    /// </summary>
    public void AuthorizationDecision(string action, string policy) =>
        _authorizationDecisions.WithLabels(new LabelSet2(action, policy)).Increment();

    // ---- end of authorization ----------------------------------------------------------------------

    public ProxyMetrics(MetricsRegistry registry)
    {
        Registry = registry;
        _authorizationDecisions = registry.CreateCounterFamily<LabelSet2>(
            "meshproxy_authorization_decisions_total", "Inbound authorization decisions, per action (allow, deny, would_deny) and deciding policy.", ["action", "policy"]);
        _configInfo = registry.CreateGaugeFamily<LabelSet1>(
            "meshproxy_config_info", "The configuration version in force (1); versions replaced since start are 0.", ["version"], MaxConfigVersions);
        _configApplied = registry.CreateGauge(
            "meshproxy_config_applied_timestamp_seconds", "When the configuration in force was applied, in seconds since the Unix epoch.");
        ConfigRejections = registry.CreateCounter(
            "meshproxy_config_rejections_total", "Configurations refused (the last good one kept serving).");
        _connectionsActive = registry.CreateGaugeFamily<LabelSet1>(
            "meshproxy_listener_connections_active", "Connections open now, per listener.", ["listener"]);
        _connectionsTotal = registry.CreateCounterFamily<LabelSet1>(
            "meshproxy_listener_connections_total", "Connections accepted since start, per listener.", ["listener"]);
        _connectFailures = registry.CreateCounterFamily<LabelSet1>(
            "meshproxy_upstream_connect_failures_total", "Requests whose upstream connection could not be made (flag UF), per cluster.", ["cluster"]);
        AccessLogDropped = registry.CreateCounter(
            "meshproxy_access_log_dropped_total", "Access log lines dropped because the writer could not keep up.");
        AccessLogWritten = registry.CreateCounter(
            "meshproxy_access_log_written_total", "Access log lines written.");
        AccessLogWriteErrors = registry.CreateCounter(
            "meshproxy_access_log_write_errors_total", "Failed writes to the access log target (their lines are lost).");
    }

    public MetricsRegistry Registry { get; }

    public Counter ConfigRejections { get; }

    public Counter AccessLogDropped { get; }

    public Counter AccessLogWritten { get; }

    public Counter AccessLogWriteErrors { get; }

    public void ConfigApplied(SidecarSnapshot snapshot)
    {
        lock (_configLock)
        {
            if (_currentVersion is not null && _currentVersion != snapshot.Version)
            {
                _configInfo.WithLabels(new LabelSet1(_currentVersion)).Set(0);
            }

            _currentVersion = snapshot.Version;
            _configInfo.WithLabels(new LabelSet1(snapshot.Version)).Set(1);
            _configApplied.Set(snapshot.AppliedAt.ToUnixTimeMilliseconds() / 1000.0);
        }
    }

    /// <summary>Counts the connections of one listener: Kestrel connection middleware, outermost, so it sees every connection for its whole life.</summary>
    public void TrackConnections(ListenOptions listen, string listener)
    {
        var active = _connectionsActive.WithLabels(new LabelSet1(listener));
        var total = _connectionsTotal.WithLabels(new LabelSet1(listener));
        listen.Use(next => async connection =>
        {
            total.Increment();
            active.Increment();
            try
            {
                await next(connection);
            }
            finally
            {
                active.Decrement();
            }
        });
    }

    public void UpstreamConnectFailure(string cluster) => _connectFailures.WithLabels(new LabelSet1(cluster)).Increment();

    // ---- Egress (src/MeshProxy.Sidecar/Egress): refusals of traffic leaving the mesh. ----
    // Created on first use so that this block stays self-contained; both labels take a handful of fixed values.
    private readonly Lock _egressLock = new();
    private CounterFamily<LabelSet2>? _egressDenied;

    /// <summary>meshproxy_egress_denied_total{protocol=http|tls|connect, reason=not_allowed|spoofed|unresolvable|no_sni}.</summary>
    public void EgressDenied(string protocol, string reason)
    {
        var family = _egressDenied;
        if (family is null)
        {
            lock (_egressLock)
            {
                family = _egressDenied ??= Registry.CreateCounterFamily<LabelSet2>(
                    "meshproxy_egress_denied_total", "Outbound requests and connections to outside the mesh that were refused, by protocol and reason.", ["protocol", "reason"]);
            }
        }

        family.WithLabels(new LabelSet2(protocol, reason)).Increment();
    }

    // ---- end of egress block ----
}
