using System.Collections.Concurrent;
using System.Globalization;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;
using MeshProxy.Metrics;
using Prometheus;
using MeshProxy.Sidecar.Configuration;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// The proxy's own health figures, under meshproxy_*. Only things that exist are exported; a new one
/// (retries, ejections, authorization decisions, certificate expiry) is one more prometheus-net metric here
/// created from <see cref="Registry"/>'s factory, recorded where it happens. Label values come from
/// configuration or fixed sets, so their number is bounded by the configuration; a child is looked up by a
/// stack-allocated span of values, which allocates nothing once it exists.
/// </summary>
internal sealed class ProxyMetrics
{
    private readonly Gauge _configInfo;
    private readonly Gauge _configApplied;
    private readonly Gauge _connectionsActive;
    private readonly Counter _connectionsTotal;
    private readonly Counter _connectFailures;
    private readonly Counter.Child _abortedInbound;
    private readonly Counter.Child _abortedOutbound;
    private readonly Lock _configLock = new();
    private string? _currentVersion;

    // ---- Authorization (the inbound pipeline's authorization step) -------------------------------
    // Kept apart from the rest of the file: one family, created first, recorded by AuthorizationDecision.

    /// <summary>The policy label when no policy decided (no ALLOW policy applies, or none matched).</summary>
    public const string NoPolicy = "none";

    private readonly Counter _authorizationDecisions;

    /// <summary>
    /// One decision: action "allow", "deny" or "would_deny" (a dry-run policy would have denied an allowed
    /// request), policy the namespace/name that decided or <see cref="NoPolicy"/>. Policy names come
    /// from configuration, so the label set is bounded by it; the strings are the snapshot's own
    /// instances, so recording allocates nothing.
    /// </summary>
    public void AuthorizationDecision(string action, string policy)
    {
        ReadOnlySpan<string> labels = [action, policy];
        _authorizationDecisions.WithLabels(labels).Inc();
    }

    private readonly Counter _authorizationAudits;

    /// <summary>A request an AUDIT policy matched (whatever the verdict), by the policy's namespace/name.</summary>
    public void AuthorizationAudited(string policy) => _authorizationAudits.WithLabels(policy).Inc();

    private readonly Counter _requestAuthentication;

    /// <summary>
    /// One request to a workload some RequestAuthentication applies to: result "valid", "no_token" or the
    /// reason a token was refused (a fixed set of JWT outcomes).
    /// </summary>
    public void RequestAuthenticated(string result) => _requestAuthentication.WithLabels(result).Inc();

    private readonly Counter _externalAuthorization;

    /// <summary>
    /// One Check sent to an external authorization provider (a CUSTOM policy matched): result "allow", "deny",
    /// "error_allow" (the provider failed or timed out and failOpen let the request in) or "error_deny" (it failed
    /// and the request was refused). Provider names come from MeshConfig.
    /// </summary>
    public void ExternalAuthorization(string provider, string result)
    {
        ReadOnlySpan<string> labels = [provider, result];
        _externalAuthorization.WithLabels(labels).Inc();
    }

    // ---- end of authorization ----------------------------------------------------------------------

    private readonly Counter _mirrorRequests;

    /// <summary>
    /// One request a route mirrors (it won the mirrorPercentage draw): result "mirrored" (the copy got an answer, any
    /// status), "failed" (no answer: refused, reset, timed out), "skipped_concurrency" (the cap on copies in flight
    /// was reached), "skipped_body" (the body was over the limit or not read whole by the primary send).
    /// </summary>
    public void MirrorRequest(string result) => _mirrorRequests.WithLabels(result).Inc();

    private readonly Counter _inboundPlaintext;
    private readonly ConcurrentDictionary<(int Port, MtlsMode Mode), Counter.Child> _inboundPlaintextByPort = new();

    /// <summary>
    /// A plaintext connection accepted on a PERMISSIVE or DISABLE port. Ports are the workload's captured ones (65535 at
    /// most); each series' child is looked up once, then found again without allocating.
    /// </summary>
    public void InboundPlaintextConnection(int port, MtlsMode mode) =>
        _inboundPlaintextByPort.GetOrAdd(
            (port, mode),
            static (key, family) => family.WithLabels(key.Port.ToString(CultureInfo.InvariantCulture), key.Mode.ToName()),
            _inboundPlaintext).Inc();

    public ProxyMetrics(MetricsRegistry registry)
    {
        Registry = registry;
        var metrics = registry.Factory;
        _authorizationDecisions = metrics.CreateCounter(
            "meshproxy_authorization_decisions_total", "Inbound authorization decisions, per action (allow, deny, would_deny) and deciding policy.", ["action", "policy"]);
        _authorizationAudits = metrics.CreateCounter(
            "meshproxy_authorization_audit_total", "Inbound requests matched by an AUDIT authorization policy (allowed or denied), per policy.", ["policy"]);
        _inboundPlaintext = metrics.CreateCounter(
            "meshproxy_inbound_plaintext_connections_total",
            "Plaintext inbound connections accepted, per workload port and its mTLS mode (PERMISSIVE, DISABLE): none on a PERMISSIVE port for a while means STRICT is safe there.",
            ["port", "mode"]);
        _requestAuthentication = metrics.CreateCounter(
            "meshproxy_request_authentication_total", "Inbound requests to a workload with RequestAuthentication, per result (valid, no_token, or why the token was refused).", ["result"]);
        _externalAuthorization = metrics.CreateCounter(
            "meshproxy_ext_authz_total", "Checks sent to external authorization providers (CUSTOM policies), per provider and result (allow, deny, error_allow, error_deny).", ["provider", "result"]);
        _mirrorRequests = metrics.CreateCounter(
            "meshproxy_mirror_requests_total", "Outbound requests a route mirrors (won the mirrorPercentage draw), per result (mirrored, failed, skipped_concurrency, skipped_body).", ["result"]);
        _configInfo = metrics.CreateGauge(
            "meshproxy_config_info", "The configuration version in force (always 1; a replaced version's series is removed).", ["version"]);
        _configApplied = metrics.CreateGauge(
            "meshproxy_config_applied_timestamp_seconds", "When the configuration in force was applied, in seconds since the Unix epoch.");
        ConfigRejections = metrics.CreateCounter(
            "meshproxy_config_rejections_total", "Configurations refused (the last good one kept serving).");
        _connectionsActive = metrics.CreateGauge(
            "meshproxy_listener_connections_active", "Connections open now, per listener.", ["listener"]);
        _connectionsTotal = metrics.CreateCounter(
            "meshproxy_listener_connections_total", "Connections accepted since start, per listener.", ["listener"]);
        _connectFailures = metrics.CreateCounter(
            "meshproxy_upstream_connect_failures_total", "Requests whose upstream connection could not be made (flag UF), per cluster.", ["cluster"]);
        var aborted = metrics.CreateCounter(
            "meshproxy_downstream_aborted_total", "Requests whose caller went away before the response was complete (flag DC), per direction.", ["direction"]);
        _abortedInbound = aborted.WithLabels("inbound");
        _abortedOutbound = aborted.WithLabels("outbound");
        AccessLogDropped = metrics.CreateCounter(
            "meshproxy_access_log_dropped_total", "Access log lines dropped because the writer could not keep up.");
        AccessLogWritten = metrics.CreateCounter(
            "meshproxy_access_log_written_total", "Access log lines written.");
        AccessLogWriteErrors = metrics.CreateCounter(
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
            // The replaced version's series goes, so that the versions of a long life do not pile up in every scrape.
            if (_currentVersion is not null && _currentVersion != snapshot.Version)
            {
                _configInfo.RemoveLabelled(_currentVersion);
            }

            _currentVersion = snapshot.Version;
            _configInfo.WithLabels(snapshot.Version).Set(1);
            _configApplied.Set(snapshot.AppliedAt.ToUnixTimeMilliseconds() / 1000.0);
        }
    }

    /// <summary>Counts the connections of one listener: Kestrel connection middleware, outermost, so it sees every connection for its whole life.</summary>
    public void TrackConnections(ListenOptions listen, string listener)
    {
        var active = _connectionsActive.WithLabels(listener);
        var total = _connectionsTotal.WithLabels(listener);
        listen.Use(next => async connection =>
        {
            total.Inc();
            active.Inc();
            try
            {
                await next(connection);
            }
            finally
            {
                active.Dec();
            }
        });
    }

    public void UpstreamConnectFailure(string cluster) => _connectFailures.WithLabels(cluster).Inc();

    /// <summary>meshproxy_downstream_aborted_total{direction}: a request whose caller went away (flag DC).</summary>
    public void DownstreamAborted(bool outbound) => (outbound ? _abortedOutbound : _abortedInbound).Inc();

    // ---- Egress (src/MeshProxy.Sidecar/Egress): refusals of traffic leaving the mesh. ----
    // Created on first use so that this block stays self-contained; both labels take a handful of fixed values.
    private readonly Lock _egressLock = new();
    private Counter? _egressDenied;

    /// <summary>meshproxy_egress_denied_total{protocol=http|tls|connect, reason=not_allowed|spoofed|unresolvable|no_sni}.</summary>
    public void EgressDenied(string protocol, string reason)
    {
        var family = _egressDenied;
        if (family is null)
        {
            lock (_egressLock)
            {
                family = _egressDenied ??= Registry.Factory.CreateCounter(
                    "meshproxy_egress_denied_total", "Outbound requests and connections to outside the mesh that were refused, by protocol and reason.", ["protocol", "reason"]);
            }
        }

        ReadOnlySpan<string> labels = [protocol, reason];
        family.WithLabels(labels).Inc();
    }

    // ---- end of egress block ----
}

// ---- Identity, resilience and control-plane state (issues 4, 6, 7) -------------------------------------------
// Kept apart from ProxyMetrics: everything here is read at scrape time from counters the data path already keeps
// (TlsCounters, the SvidStore, each cluster's ResilienceStats), so exporting it adds nothing to a request.

/// <summary>
/// Certificate expiry, TLS handshakes and refusals, per-cluster retries/overflow/ejections, config staleness and
/// NACKs. Fixed label sets are callback metrics. Per-cluster figures cannot be: a callback family's samples are
/// fixed when it is registered, while clusters come and go with the configuration. They are ordinary families
/// brought up to date by <see cref="Refresh"/>, which the stats endpoint calls just before each scrape; a
/// cluster's counters advance by the growth of its stats since the last scrape (a cluster that disappeared and
/// came back starts from zero, and counts from there), so exported counters never go down.
/// </summary>
internal sealed class MeshStateMetrics
{
    /// <summary>Clusters come from configuration; the bound keeps a pathological config from growing the exposition without end.</summary>
    private const int MaxClusters = 2048;

    private static readonly (string Name, string Help, Func<ResilienceStats, long> Read)[] ClusterCounters =
    [
        ("meshproxy_upstream_retries_total", "Retry attempts (attempts after the first), per cluster.", s => s.Retries),
        ("meshproxy_upstream_retry_budget_exhausted_total", "Failures returned because the retry budget was spent (flag UO), per cluster.", s => s.RetriesExhausted),
        ("meshproxy_upstream_retry_overflow_total", "Retries refused by the concurrent-retries limit, per cluster.", s => s.RetryOverflow),
        ("meshproxy_upstream_overflow_total", "Requests and TCP streams refused by a circuit breaker (flag UO), per cluster.", s => s.Overflow),
        ("meshproxy_upstream_timeouts_total", "Requests answered 504 UT (per-try or route timeout), per cluster.", s => s.Timeouts),
        ("meshproxy_outlier_ejections_total", "Endpoints ejected by outlier detection, per cluster.", s => s.Ejections),
    ];

    private readonly SnapshotStore _snapshots;
    private readonly Counter[] _clusterCounters;
    private readonly Gauge _ejectedEndpoints;
    private readonly Counter.Child _clustersDropped;
    private readonly Dictionary<string, long[]> _lastSeen = new(StringComparer.Ordinal);
    private readonly Lock _refreshLock = new();
    private readonly TimeProvider _time;

    /// <param name="time">The data path's clock, which endpoint ejections are judged on.</param>
    public MeshStateMetrics(MetricsRegistry registry, Identity.SidecarIdentity identity, SnapshotStore snapshots, TimeProvider time, bool controlPlaneMode, ControlPlaneClient.ControlPlaneTls? controlPlaneTls = null)
    {
        _snapshots = snapshots;
        _time = time;
        var store = identity.Store;
        var tls = identity.Counters;

        // Absent (the callback throws) until there is a certificate: 0 would read as "expired now".
        registry.CallbackGauge(
            "meshproxy_certificate_expiry_seconds", "Seconds until the workload certificate (SVID) expires; negative once it has.",
            () => store.NotAfter is { } notAfter ? (notAfter - DateTimeOffset.UtcNow).TotalSeconds : throw new InvalidOperationException("no SVID yet"));
        registry.CallbackCounter(
            "meshproxy_tls_handshakes_total", "Mutual TLS handshakes completed with a verified peer, per direction.", ["direction"],
            [new(["inbound"], () => tls.InboundHandshakes), new(["outbound"], () => tls.OutboundHandshakes)]);
        registry.CallbackCounter(
            "meshproxy_tls_handshake_failures_total", "TLS handshakes that failed for a reason other than the peer's certificate (protocol, cipher, garbage, timeout), per direction.", ["direction"],
            [new(["inbound"], () => tls.InboundHandshakeFailures), new(["outbound"], () => tls.OutboundHandshakeFailures)]);
        registry.CallbackCounter(
            "meshproxy_tls_handshakes_shed_total", "Inbound TLS connections closed before their handshake because the listener's handshake rate limit was exceeded.",
            () => tls.InboundHandshakesShed);
        var reasons = Enum.GetValues<PeerVerificationFailure>().Where(r => r != PeerVerificationFailure.None).ToArray();
        registry.CallbackCounter(
            "meshproxy_tls_peer_refusals_total",
            "Connections refused because the peer's certificate was refused, per direction and verifier reason (outbound ones fail their request with flag UPI).",
            ["direction", "reason"],
            [
                .. reasons.Select(r => new CallbackSample(["inbound", ReasonLabel(r)], () => tls.InboundRefusedFor(r))),
                .. reasons.Select(r => new CallbackSample(["outbound", ReasonLabel(r)], () => tls.OutboundRefusedFor(r))),
            ]);
        registry.CallbackCounter(
            "meshproxy_tls_plaintext_connections_total", "Plaintext inbound connections on an mTLS sidecar: accepted (PERMISSIVE, DISABLE) or refused (STRICT); per port: meshproxy_inbound_plaintext_connections_total.", ["outcome"],
            [new(["accepted"], () => tls.PlaintextAccepted), new(["refused"], () => tls.PlaintextRefused)]);

        _clusterCounters = [.. ClusterCounters.Select(c => registry.Factory.CreateCounter(c.Name, c.Help, ["cluster"]))];
        _ejectedEndpoints = registry.Factory.CreateGauge(
            "meshproxy_outlier_ejected_endpoints", "Endpoints ejected now by outlier detection, per cluster.", ["cluster"]);
        _clustersDropped = registry.DroppedCounter("cluster");

        registry.CallbackGauge(
            "meshproxy_config_stale", "1 while the configuration in force is a saved snapshot the control plane has not confirmed since start; 0 otherwise (always 0 in standalone mode).",
            () => snapshots.Current.Stale ? 1 : 0);
        if (controlPlaneMode)
        {
            // In control-plane mode every refused snapshot is answered with a NACK (ControlPlaneSource.Apply).
            var nacks = registry.Factory.CreateCounter("meshproxy_config_nacks_total", "Snapshots pushed by the control plane and refused with a NACK (the last good one kept serving).");
            snapshots.Rejected += _ => nacks.Inc();
        }

        if (controlPlaneTls is { IsTls: true })
        {
            registry.CallbackCounter(
                "meshproxy_control_plane_tls_refusals_total",
                "TLS handshakes with the control plane refused because its certificate does not chain to controlPlane.caFile or names another identity, per verifier reason (ca_file_unusable: the file itself).",
                ["reason"],
                [
                    .. reasons.Select(r => new CallbackSample([ReasonLabel(r)], () => controlPlaneTls.Refusals(r))),
                    new CallbackSample([ControlPlaneClient.ControlPlaneTls.CaFileUnusable], () => controlPlaneTls.Refusals(null)),
                ]);
        }
    }

    /// <summary>Brings the per-cluster families up to date with the clusters of the snapshot in force. Called per scrape.</summary>
    public void Refresh()
    {
        var snapshot = _snapshots.Current;
        var now = LoadBalancing.HealthTime.Milliseconds(_time);
        lock (_refreshLock)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var cluster in snapshot.Clusters())
            {
                if (!seen.Add(cluster.Name) || cluster.LiveState is not IClusterStats { Stats: var stats })
                {
                    continue;
                }

                if (!_lastSeen.TryGetValue(cluster.Name, out var last))
                {
                    if (_lastSeen.Count >= MaxClusters)
                    {
                        _clustersDropped.Inc();
                        continue;
                    }

                    last = new long[ClusterCounters.Length];
                    _lastSeen[cluster.Name] = last;
                }

                for (var i = 0; i < ClusterCounters.Length; i++)
                {
                    var value = ClusterCounters[i].Read(stats);
                    var growth = value >= last[i] ? value - last[i] : value; // fresh state: counts from zero again
                    last[i] = value;
                    var counter = _clusterCounters[i].WithLabels(cluster.Name);
                    if (growth > 0)
                    {
                        counter.Inc(growth);
                    }
                }

                var ejected = 0;
                foreach (var endpoint in cluster.Endpoints)
                {
                    if (endpoint.Health.IsEjected(now))
                    {
                        ejected++;
                    }
                }

                _ejectedEndpoints.WithLabels(cluster.Name).Set(ejected);
            }

            foreach (var gone in _lastSeen.Keys.Where(k => !seen.Contains(k)).ToList())
            {
                _lastSeen.Remove(gone);
                _ejectedEndpoints.WithLabels(gone).Set(0);
            }
        }
    }

    /// <summary>UntrustedIssuer becomes untrusted_issuer, the spelling of Prometheus label values elsewhere.</summary>
    private static string ReasonLabel(PeerVerificationFailure reason)
    {
        var name = reason.ToString();
        var builder = new System.Text.StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0)
            {
                builder.Append('_');
            }

            builder.Append(char.ToLowerInvariant(name[i]));
        }

        return builder.ToString();
    }
}
