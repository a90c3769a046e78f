using MeshProxy.Metrics.Internal;

namespace MeshProxy.Metrics.Istio;

/// <summary>
/// Istio's standard service metrics, with Istio's names, label names and order and default buckets, so
/// that existing Istio dashboards and alerts work unchanged. One lookup per request finds a series
/// that holds the request counter and the three histograms together.
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

    private readonly SeriesMap<RequestLabels, RequestSeries> _requests;
    private readonly SeriesMap<TcpLabels, TcpSeries> _tcp;

    public IstioMetrics(MetricsRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        var max = registry.Options.MaxSeriesPerFamily;
        _requests = new SeriesMap<RequestLabels, RequestSeries>(
            "istio_requests", [.. IstioLabelNames.Request], max, static () => new RequestSeries(), new RequestSeries());
        _tcp = new SeriesMap<TcpLabels, TcpSeries>(
            "istio_tcp", [.. IstioLabelNames.Tcp], max, static () => new TcpSeries(), new TcpSeries());
        registry.TrackCapacity(_requests);
        registry.TrackCapacity(_tcp);

        registry.Register(new StripedCounterFamily<RequestLabels, RequestSeries>(
            _requests, RequestsTotal, "Requests handled by this proxy.", static r => r.Data, RequestSeries.Stride, RequestSeries.CountOffset));
        registry.Register(new RequestHistogramFamily(_requests, RequestDuration, "Duration of requests, in milliseconds.", RequestSeries.DurationOffset));
        registry.Register(new RequestHistogramFamily(_requests, RequestBytes, "Size of HTTP request bodies and headers on the wire, in bytes.", RequestSeries.RequestBytesOffset));
        registry.Register(new RequestHistogramFamily(_requests, ResponseBytes, "Size of HTTP response bodies and headers on the wire, in bytes.", RequestSeries.ResponseBytesOffset));
        registry.Register(new StripedCounterFamily<TcpLabels, TcpSeries>(_tcp, TcpSentBytes, "Bytes sent to the downstream during TCP connections.", static t => t.Data, TcpSeries.Stride, TcpSeries.Sent));
        registry.Register(new StripedCounterFamily<TcpLabels, TcpSeries>(_tcp, TcpReceivedBytes, "Bytes received from the downstream during TCP connections.", static t => t.Data, TcpSeries.Stride, TcpSeries.Received));
        registry.Register(new StripedCounterFamily<TcpLabels, TcpSeries>(_tcp, TcpConnectionsOpened, "TCP connections opened.", static t => t.Data, TcpSeries.Stride, TcpSeries.Opened));
        registry.Register(new StripedCounterFamily<TcpLabels, TcpSeries>(_tcp, TcpConnectionsClosed, "TCP connections closed.", static t => t.Data, TcpSeries.Stride, TcpSeries.Closed));
    }

    /// <summary>
    /// Envoy's default histogram bounds, which Istio uses for all four request histograms unless a pod
    /// overrides them (envoyproxy/envoy source/common/stats/histogram_impl.cc, defaultBuckets; istio/api
    /// annotation sidecar.istio.io/statsHistogramBuckets, "Default buckets are ...").
    /// </summary>
    public static IReadOnlyList<double> DefaultBuckets => RequestSeries.Bounds;

    /// <summary>
    /// Records one finished request. Negative byte counts (unknown lengths) are recorded as 0; a NaN
    /// duration is counted in istio_requests_total but not observed.
    /// </summary>
    public void RecordRequest(in RequestLabels labels, double durationMs, long requestBytes, long responseBytes) =>
        _requests.GetOrAdd(labels).Record(durationMs, requestBytes, responseBytes);

    /// <summary>
    /// Counts a pass-through stream opened and returns its meter, which adds the stream's bytes as they
    /// pass and counts it closed at the end. One series lookup per stream.
    /// </summary>
    public TcpStreamMeter OpenTcpStream(in TcpLabels labels)
    {
        var series = _tcp.GetOrAdd(labels);
        series.Add(TcpSeries.Opened, 1);
        return new TcpStreamMeter(series);
    }

    public void RecordTcpConnectionOpened(in TcpLabels labels) => _tcp.GetOrAdd(labels).Add(TcpSeries.Opened, 1);

    public void RecordTcpConnectionClosed(in TcpLabels labels) => _tcp.GetOrAdd(labels).Add(TcpSeries.Closed, 1);

    /// <summary>Adds bytes moved since the last call for this connection (Istio reports deltas periodically and at close).</summary>
    public void RecordTcpBytes(in TcpLabels labels, long sentBytes, long receivedBytes)
    {
        var series = _tcp.GetOrAdd(labels);
        series.Add(TcpSeries.Sent, Math.Max(0, sentBytes));
        series.Add(TcpSeries.Received, Math.Max(0, receivedBytes));
    }

    /// <summary>Per stripe: request count, then three histograms (buckets, +Inf, sum) back to back.</summary>
    internal sealed class RequestSeries
    {
        public static readonly double[] Bounds = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
        public const int CountOffset = 0;
        public static readonly int DurationOffset = 1;
        public static readonly int RequestBytesOffset = DurationOffset + HistogramCells.CellCount(Bounds);
        public static readonly int ResponseBytesOffset = RequestBytesOffset + HistogramCells.CellCount(Bounds);
        private static readonly int Cells = ResponseBytesOffset + HistogramCells.CellCount(Bounds);
        public static readonly int Stride = Stripes.Stride(Cells);

        public long[] Data { get; } = Stripes.Allocate(Cells);

        public void Record(double durationMs, long requestBytes, long responseBytes)
        {
            var data = Data;
            var at = Stripes.CurrentBase(Stride);
            Interlocked.Increment(ref data[at + CountOffset]);
            HistogramCells.Observe(data, at + DurationOffset, Bounds, durationMs);
            HistogramCells.Observe(data, at + RequestBytesOffset, Bounds, Math.Max(0, requestBytes));
            HistogramCells.Observe(data, at + ResponseBytesOffset, Bounds, Math.Max(0, responseBytes));
        }
    }

    internal sealed class TcpSeries
    {
        public const int Sent = 0;
        public const int Received = 1;
        public const int Opened = 2;
        public const int Closed = 3;
        private const int Cells = 4;
        public static readonly int Stride = Stripes.Stride(Cells);

        public long[] Data { get; } = Stripes.Allocate(Cells);

        public void Add(int cell, long amount) => Interlocked.Add(ref Data[Stripes.CurrentBase(Stride) + cell], amount);
    }

    private sealed class RequestHistogramFamily(SeriesMap<RequestLabels, RequestSeries> series, string name, string help, int offset) : IMetricFamily
    {
        private readonly byte[] _header = ExpositionWriter.EncodeHeader(name, help, "histogram");
        private readonly HistogramNames _names = new(name, RequestSeries.Bounds);

        public string Name => name;

        public void Write(ExpositionWriter writer)
        {
            var entries = series.Snapshot();
            if (entries.IsEmpty)
            {
                return;
            }

            writer.Write(_header);
            foreach (var entry in entries)
            {
                HistogramWriter.Write(writer, _names, entry.LabelBlock, entry.Series.Data, RequestSeries.Stride, offset, RequestSeries.Bounds.Length);
            }
        }
    }

    /// <summary>A counter read from one cell of each series' striped data: the requests counter and the TCP counters.</summary>
    private sealed class StripedCounterFamily<TLabels, TSeries>(
        SeriesMap<TLabels, TSeries> series, string name, string help, Func<TSeries, long[]> data, int stride, int cell) : IMetricFamily
        where TLabels : struct, ILabelSet
        where TSeries : class
    {
        private readonly byte[] _header = ExpositionWriter.EncodeHeader(name, help, "counter");
        private readonly byte[] _name = ExpositionWriter.Ascii(name);

        public string Name => name;

        public void Write(ExpositionWriter writer)
        {
            var entries = series.Snapshot();
            if (entries.IsEmpty)
            {
                return;
            }

            writer.Write(_header);
            foreach (var entry in entries)
            {
                writer.Write(_name);
                HistogramWriter.WriteLabels(writer, entry.LabelBlock);
                writer.WriteLong(Stripes.Sum(data(entry.Series), stride, cell));
                writer.Write((byte)'\n');
            }
        }
    }
}
