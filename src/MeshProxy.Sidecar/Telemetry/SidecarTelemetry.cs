using System.Diagnostics;
using MeshProxy.Metrics;
using MeshProxy.Metrics.Istio;
using MeshProxy.Metrics.Runtime;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Routing;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Telemetry on the request path: the pipelines call <see cref="Start"/> first and <see cref="Finish"/>
/// last, with the labels of the snapshot they serve the request on (built with the snapshot's runtime state,
/// Runtime/RuntimeBuilder.cs); in between they fill in a <see cref="RequestRecord"/>. Finish records Istio's request metrics
/// (always), queues an access log line (when on) and ends the span (when sampled). Nothing here
/// allocates for an unsampled request with a declared body length, except the access log's queue slot.
/// </summary>
internal sealed class SidecarTelemetry : IDisposable
{
    private const string Inbound = "inbound";
    private const string Outbound = "outbound";

    private readonly bool _ownsAborts;

    /// <param name="aborts">The summary of aborted requests; by default one on the system clock (tests give one on a fake clock).</param>
    public SidecarTelemetry(SnapshotStore store, ILoggerFactory loggers, int accessLogCapacity = AccessLog.DefaultCapacity, AbortedRequests? aborts = null)
    {
        var logger = loggers.CreateLogger<SidecarTelemetry>();
        _ownsAborts = aborts is null;
        Aborts = aborts ?? new AbortedRequests(TimeProvider.System, loggers.CreateLogger<AbortedRequests>());
        Registry = new MetricsRegistry();
        Istio = new IstioMetrics(Registry);
        Proxy = new ProxyMetrics(Registry);
        ProcessMetrics.Register(Registry);
        RuntimeMetrics.Register(Registry);
        Tracing = new Tracing(logger);
        AccessLog = new AccessLog(
            () => store.HasSnapshot && store.Current.Mesh.AccessLog is { Enabled: true } log ? log.Path : null,
            Proxy, logger, accessLogCapacity);

        store.Applied += OnApplied;
        store.Rejected += _ => Proxy.ConfigRejections.Inc();
        if (store.HasSnapshot)
        {
            OnApplied(store.Current);
        }
    }

    public MetricsRegistry Registry { get; }

    public IstioMetrics Istio { get; }

    public ProxyMetrics Proxy { get; }

    public Tracing Tracing { get; }

    public AccessLog AccessLog { get; }

    public AbortedRequests Aborts { get; }

    /// <summary>Starts the clock; counts an undeclared request body; if sampled, starts the span and puts its context in the headers the next hop gets.</summary>
    public RequestRecord Start(HttpContext context, SnapshotLabels labels, bool outbound)
    {
        var snapshot = labels.Snapshot;
        var record = new RequestRecord { Started = Stopwatch.GetTimestamp() };
        if (snapshot.Mesh.AccessLog.Enabled)
        {
            record.StartTime = DateTime.UtcNow;
        }

        var request = context.Request;
        if (request.ContentLength is null && context.Features.Find<IHttpRequestBodyDetectionFeature>() is { CanHaveBody: true })
        {
            request.Body = record.RequestBody = new CountingStream(request.Body);
        }

        if (Tracing.Enabled)
        {
            record.Span = StartSpan(context, snapshot, outbound, Tracing);
        }

        return record;
    }

    /// <summary>Records the finished request: metrics, access log line, span. Called once the response is complete (or abandoned).</summary>
    public void Finish(HttpContext context, SnapshotLabels labels, ref RequestRecord record, bool outbound)
    {
        var snapshot = labels.Snapshot;
        if ((record.Flags & ResponseFlags.DownstreamConnectionTermination) != 0)
        {
            // The caller went away: a count and the interval's summary line, not a line per request.
            Aborts.Record(outbound);
            Proxy.DownstreamAborted(outbound);
        }

        var durationMs = Stopwatch.GetElapsedTime(record.Started).TotalMilliseconds;
        var request = context.Request;
        var response = context.Response;

        // Envoy's convention: a request whose caller left before any response has code 0.
        var code = !response.HasStarted && (record.Flags & ResponseFlags.DownstreamConnectionTermination) != 0 ? 0 : response.StatusCode;
        var requestBytes = request.ContentLength ?? record.RequestBody?.Count ?? 0;
        var responseBytes = response.ContentLength ?? (context.Features.Find<IHttpResponseBodyFeature>() as CountingResponseBodyFeature)?.Count ?? 0;
        var grpc = GrpcStatusLabels.IsGrpc(request);
        var flags = record.Flags.ToCode();

        var peer = outbound ? null : PeerTelemetry.Of(context);
        var workload = WorkloadOf(context, labels, record, peer, outbound);
        var security = outbound ? PeerTelemetry.SourceSecurityPolicy : PeerTelemetry.SecurityPolicy(peer);

        Istio.RecordRequest(
            new RequestLabels
            {
                Workload = workload,
                RequestProtocol = grpc ? "grpc" : "http",
                ResponseCode = code,
                GrpcResponseStatus = grpc ? GrpcStatusLabels.Of(context) : null,
                ResponseFlags = flags,
                ConnectionSecurityPolicy = security,
            },
            durationMs, requestBytes, responseBytes,
            record.Span?.TraceId.ToHexString()); // a sampled request's trace: the duration's exemplar (OpenMetrics)

        // A switched stream (WebSocket) has ended when the forwarder returns: its bytes are counted already.
        record.Upgrade?.Close();

        if ((record.Flags & ResponseFlags.UpstreamConnectionFailure) != 0 && record.Cluster is not null)
        {
            Proxy.UpstreamConnectFailure(record.Cluster.Name);
        }

        if (snapshot.Mesh.AccessLog.Enabled)
        {
            var headers = request.Headers;
            var connection = context.Connection;
            AccessLog.Enqueue(new AccessLogEntry(
                record.StartTime, outbound ? Outbound : Inbound, request.Method, request.Path.Value ?? string.Empty,
                request.QueryString.Value ?? string.Empty, request.Protocol, code, record.Flags, requestBytes, responseBytes, durationMs,
                UpstreamTiming.Of(context)?.ServiceTimeMs ?? -1, record.Endpoint, record.Cluster?.Name, record.RouteName,
                First(headers, RequestIds.HeaderName), First(headers, "host"), First(headers, "user-agent"), First(headers, "x-forwarded-for"),
                connection.RemoteIpAddress, connection.RemotePort, peer?.Principal));
        }

        if (record.Span is { } span)
        {
            EndSpan(span, code, flags, record.Cluster, outbound ? record.PeerPrincipal : peer?.Principal, grpc ? GrpcStatusLabels.Of(context) : null, outbound, record.Attempts);
        }
    }

    /// <summary>
    /// Called just before forwarding, once the destination is known: a request that may switch protocols
    /// (HTTP/1.1 Upgrade, HTTP/2 extended CONNECT) gets its upgrade features replaced by a meter, so the
    /// WebSocket's bytes are counted in istio_tcp_* as they pass. Other requests only pay the two feature reads.
    /// </summary>
    public void MeterUpgrade(HttpContext context, SnapshotLabels snapshotLabels, ref RequestRecord record, bool outbound)
    {
        var features = context.Features;
        var upgrade = features.Find<IHttpUpgradeFeature>();
        var connect = features.Find<IHttpExtendedConnectFeature>();
        if (upgrade is not { IsUpgradableRequest: true } && connect is not { IsExtendedConnect: true })
        {
            return;
        }

        var peer = outbound ? null : PeerTelemetry.Of(context);
        var labels = new TcpLabels
        {
            Workload = WorkloadOf(context, snapshotLabels, record, peer, outbound),
            ConnectionSecurityPolicy = outbound ? PeerTelemetry.SourceSecurityPolicy : PeerTelemetry.SecurityPolicy(peer),
        };
        var cluster = record.Cluster ?? record.Destination?.DefaultCluster;
        var metered = new MeteredUpgrade(Istio, labels, upgrade, connect, outbound && cluster is not null ? (snapshotLabels, cluster) : null);
        record.Upgrade = metered;
        if (upgrade is not null)
        {
            features.Put<IHttpUpgradeFeature>(metered);
        }

        if (connect is not null)
        {
            features.Put<IHttpExtendedConnectFeature>(metered);
        }
    }

    public void Dispose()
    {
        AccessLog.Dispose();
        Tracing.Dispose();
        if (_ownsAborts)
        {
            Aborts.Dispose();
        }
    }

    private void OnApplied(SidecarSnapshot snapshot)
    {
        Proxy.ConfigApplied(snapshot);
        Tracing.Apply(snapshot, SnapshotLabels.CanonicalServiceOf(snapshot.Workload));
    }

    /// <summary>Who talked to whom. Outbound, the peer is the upstream; inbound, the caller authenticated by mTLS (null on plaintext).</summary>
    private static IstioWorkloadLabels WorkloadOf(HttpContext context, SnapshotLabels labels, in RequestRecord record, Identity.PeerIdentity? peer, bool outbound)
    {
        return outbound
            ? (record.Cluster ?? record.Destination?.DefaultCluster) is { } cluster ? labels.Outbound(cluster, record.Peer, record.PeerPrincipal)
                : record.EgressAllowed ? labels.Egress(record.EgressPolicy)
                : labels.OutboundBlackHole
            : labels.Inbound(CalledAs(labels.Snapshot, context.Request), peer, peer is null ? null : PeerMetadata.Parse(First(context.Request.Headers, PeerMetadata.HeaderName)));
    }

    private static VirtualHost? CalledAs(SidecarSnapshot snapshot, HttpRequest request) =>
        snapshot.Services.TryResolve(request.Headers.Host.ToString(), 80, out var virtualHost) ? virtualHost : null;

    private static string? First(IHeaderDictionary headers, string name) =>
        headers.TryGetValue(name, out var values) && values.Count > 0 ? values[0] : null;

    private static Activity? StartSpan(HttpContext context, SidecarSnapshot snapshot, bool outbound, Tracing tracing)
    {
        var request = context.Request;
        var format = snapshot.Mesh.Tracing.Propagation;
        var decision = TracePropagator.Extract(request.Headers, format, out var parent);
        // The sampling decision is made here, before any Activity exists: the SDK would create one
        // even for a dropped request (to propagate its context), which is the cost we avoid.
        var sampled = decision switch
        {
            TracePropagator.Decision.Parent => (parent.TraceFlags & ActivityTraceFlags.Recorded) != 0,
            TracePropagator.Decision.None => tracing.SampleRoot(),
            _ => false,
        };
        if (!sampled)
        {
            return null; // the caller's headers, if any, pass on untouched
        }

        var span = Telemetry.Tracing.Source.StartActivity(request.Method, outbound ? ActivityKind.Client : ActivityKind.Server, parent);
        if (span is null)
        {
            return null;
        }

        TracePropagator.Inject(request.Headers, format, span);
        if (span.IsAllDataRequested)
        {
            // OpenTelemetry HTTP semantic conventions (stable set).
            span.SetTag("http.request.method", request.Method);
            span.SetTag("url.path", request.Path.Value);
            span.SetTag("url.scheme", request.Scheme);
            span.SetTag("server.address", request.Host.Host);
            if (request.Host.Port is { } port)
            {
                span.SetTag("server.port", port);
            }

            span.SetTag("network.protocol.version", request.Protocol switch
            {
                "HTTP/2" => "2",
                "HTTP/1.1" => "1.1",
                "HTTP/1.0" => "1.0",
                var other => other,
            });
            span.SetTag("user_agent.original", request.Headers.UserAgent.ToString());
            span.SetTag("client.address", context.Connection.RemoteIpAddress?.ToString());
            span.SetTag("meshproxy.request_id", First(request.Headers, RequestIds.HeaderName));
        }

        return span;
    }

    private static void EndSpan(Activity span, int code, string flags, Cluster? cluster, string? peerPrincipal, string? grpcStatus, bool outbound, int attempts)
    {
        if (span.IsAllDataRequested)
        {
            // Semantic conventions: set on a client span if and only if the request was resent. The
            // sidecar keeps one client span for all its attempts (the app made one request), so the
            // count is of the attempts after the first, whatever their cause (status, reset, timeout).
            if (outbound && attempts > 1)
            {
                span.SetTag("http.request.resend_count", attempts - 1);
            }

            span.SetTag("http.response.status_code", code);
            span.SetTag("meshproxy.response_flags", flags);
            span.SetTag("meshproxy.upstream_cluster", cluster?.Name);
            span.SetTag("meshproxy.peer.principal", peerPrincipal ?? Metrics.Istio.IstioLabelNames.Unknown);
            if (grpcStatus is not null)
            {
                span.SetTag("rpc.grpc.status_code", grpcStatus);
            }

            // Semantic conventions: a client span fails on 4xx and 5xx, a server span on 5xx only; no response at all is an error either way.
            if (code == 0 || code >= 500 || (outbound && code >= 400) || flags != "-")
            {
                span.SetTag("error.type", code == 0 || flags != "-" ? flags : code.ToString(System.Globalization.CultureInfo.InvariantCulture));
                span.SetStatus(ActivityStatusCode.Error);
            }
        }

        span.Dispose();
    }
}
