using MeshProxy.Metrics.Internal;
using Prometheus;

namespace MeshProxy.Metrics.Istio;

/// <summary>
/// Istio's standard service metrics, with Istio's names, label names and order and default buckets, so
/// that existing Istio dashboards and alerts work unchanged. The metrics are prometheus-net collectors;
/// one lookup per request (by label-string identity) finds a series that holds the cached children of the
/// request counter and the three histograms together, so recording is Inc/Observe on those children.
/// </summary>
public sealed class IstioMetrics
{
    public const string RequestsTotal = "istio_requests_total";
    public const string RequestDuration = "istio_request_duration_milliseconds";
    public const string RequestBytes = "istio_request_bytes";
    public const string ResponseBytes = "istio_response_bytes";
    public const string TcpSentBytes = "istio_tcp_sent_bytes_total";
    public const string TcpReceivedBytes = "istio_tcp_received_bytes_total";
    public const string TcpConnectionsOpened = "istio_tcp_connections_opened_total";
    public const string TcpConnectionsClosed = "istio_tcp_connections_closed_total";

    /// <summary>The exemplar label of a sampled request's duration (the name Grafana and Tempo look for).</summary>
    private static readonly Exemplar.LabelKey TraceIdKey = Exemplar.Key("trace_id");

    /// <summary>
    /// Envoy's default histogram bounds, which Istio uses for all four request histograms unless a pod
    /// overrides them (envoyproxy/envoy source/common/stats/histogram_impl.cc, defaultBuckets; istio/api
    /// annotation sidecar.istio.io/statsHistogramBuckets, "Default buckets are ...").
    /// </summary>
    private static readonly double[] Bounds = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

    private readonly SeriesMap<RequestLabels, RequestSeries> _requests;
    private readonly SeriesMap<TcpLabels, TcpSeries> _tcp;

    public IstioMetrics(MetricsRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        var max = registry.Options.MaxSeriesPerFamily;
        var requests = RequestCollectors.Create(registry.Factory);
        var tcp = TcpCollectors.Create(registry.Factory);
        _requests = new SeriesMap<RequestLabels, RequestSeries>(
            "istio_requests", IstioLabelNames.Request.Count, max, requests.Series,
            RequestCollectors.Create(registry.SinkFactory).Series(SinkValues(IstioLabelNames.Request.Count)), registry.DroppedCounter("istio_requests"));
        _tcp = new SeriesMap<TcpLabels, TcpSeries>(
            "istio_tcp", IstioLabelNames.Tcp.Count, max, tcp.Series,
            TcpCollectors.Create(registry.SinkFactory).Series(SinkValues(IstioLabelNames.Tcp.Count)), registry.DroppedCounter("istio_tcp"));
    }

    public static IReadOnlyList<double> DefaultBuckets => Bounds;

    /// <summary>
    /// Records one finished request. Negative byte counts (unknown lengths) are recorded as 0; a NaN
    /// duration is counted in istio_requests_total but not observed. <paramref name="traceId"/> (a sampled
    /// request's trace, 32 hex digits) becomes the duration's exemplar, which only OpenMetrics exports.
    /// </summary>
    public void RecordRequest(in RequestLabels labels, double durationMs, long requestBytes, long responseBytes, string? traceId = null) =>
        _requests.GetOrAdd(labels).Record(durationMs, requestBytes, responseBytes, traceId);

    /// <summary>
    /// Counts a pass-through stream opened and returns its meter, which adds the stream's bytes as they
    /// pass and counts it closed at the end. One series lookup per stream.
    /// </summary>
    public TcpStreamMeter OpenTcpStream(in TcpLabels labels)
    {
        var series = _tcp.GetOrAdd(labels);
        series.Opened.Inc();
        return new TcpStreamMeter(series);
    }

    public void RecordTcpConnectionOpened(in TcpLabels labels) => _tcp.GetOrAdd(labels).Opened.Inc();

    public void RecordTcpConnectionClosed(in TcpLabels labels) => _tcp.GetOrAdd(labels).Closed.Inc();

    /// <summary>Adds bytes moved since the last call for this connection (Istio reports deltas periodically and at close).</summary>
    public void RecordTcpBytes(in TcpLabels labels, long sentBytes, long receivedBytes)
    {
        var series = _tcp.GetOrAdd(labels);
        series.Sent.Inc(Math.Max(0, sentBytes));
        series.Received.Inc(Math.Max(0, receivedBytes));
    }

    private static string[] SinkValues(int count) => Enumerable.Repeat(string.Empty, count).ToArray();

    /// <summary>The cached children of one request label set: the counter and the three histograms.</summary>
    internal sealed class RequestSeries(Counter.Child count, Histogram.Child duration, Histogram.Child requestSize, Histogram.Child responseSize)
    {
        public void Record(double durationMs, long requestBytes, long responseBytes, string? traceId)
        {
            count.Inc();

            // NaN has no bucket and would poison the sum for ever: it is not an observation.
            if (!double.IsNaN(durationMs))
            {
                if (traceId is null)
                {
                    duration.Observe(durationMs);
                }
                else
                {
                    duration.Observe(durationMs, Exemplar.From(TraceIdKey.WithValue(traceId)));
                }
            }

            requestSize.Observe(Math.Max(0, requestBytes));
            responseSize.Observe(Math.Max(0, responseBytes));
        }
    }

    /// <summary>The cached children of one TCP label set.</summary>
    internal sealed class TcpSeries(Counter.Child sent, Counter.Child received, Counter.Child opened, Counter.Child closed)
    {
        public Counter.Child Sent => sent;

        public Counter.Child Received => received;

        public Counter.Child Opened => opened;

        public Counter.Child Closed => closed;
    }

    private sealed record RequestCollectors(Counter Count, Histogram Duration, Histogram RequestBytes, Histogram ResponseBytes)
    {
        public static RequestCollectors Create(IMetricFactory factory)
        {
            var labels = IstioLabelNames.Request.ToArray();
            var buckets = new HistogramConfiguration { Buckets = Bounds };
            return new(
                factory.CreateCounter(RequestsTotal, "Requests handled by this proxy.", labels),
                factory.CreateHistogram(RequestDuration, "Duration of requests, in milliseconds.", labels, buckets),
                factory.CreateHistogram(IstioMetrics.RequestBytes, "Size of HTTP request bodies and headers on the wire, in bytes.", labels, buckets),
                factory.CreateHistogram(IstioMetrics.ResponseBytes, "Size of HTTP response bodies and headers on the wire, in bytes.", labels, buckets));
        }

        public RequestSeries Series(string[] values) =>
            new(Count.WithLabels(values), Duration.WithLabels(values), RequestBytes.WithLabels(values), ResponseBytes.WithLabels(values));
    }

    private sealed record TcpCollectors(Counter Sent, Counter Received, Counter Opened, Counter Closed)
    {
        public static TcpCollectors Create(IMetricFactory factory)
        {
            var labels = IstioLabelNames.Tcp.ToArray();
            return new(
                factory.CreateCounter(TcpSentBytes, "Bytes sent to the downstream during TCP connections.", labels),
                factory.CreateCounter(TcpReceivedBytes, "Bytes received from the downstream during TCP connections.", labels),
                factory.CreateCounter(TcpConnectionsOpened, "TCP connections opened.", labels),
                factory.CreateCounter(TcpConnectionsClosed, "TCP connections closed.", labels));
        }

        public TcpSeries Series(string[] values) =>
            new(Sent.WithLabels(values), Received.WithLabels(values), Opened.WithLabels(values), Closed.WithLabels(values));
    }
}
