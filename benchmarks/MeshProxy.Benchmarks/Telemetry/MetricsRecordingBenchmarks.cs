using BenchmarkDotNet.Attributes;
using MeshProxy.Metrics;
using MeshProxy.Metrics.Istio;
using Prometheus;

namespace MeshProxy.Benchmarks.Telemetry;

[MemoryDiagnoser]
public class MetricsRecordingBenchmarks
{
    private IstioMetrics _istio = null!;
    private MetricsRegistry _scrapeRegistry = null!;
    private RequestLabels _labels;
    private MemoryStream _buffer = null!;

    [GlobalSetup]
    public void Setup()
    {
        _istio = new IstioMetrics(new MetricsRegistry());
        _labels = Labels("frontend", 200);
        _istio.RecordRequest(_labels, 1, 1, 1);

        // ~1000 series: 250 Istio request label sets (x4 families) exported as 1000 series.
        _scrapeRegistry = new MetricsRegistry();
        var scraped = new IstioMetrics(_scrapeRegistry);
        for (var i = 0; i < 250; i++)
        {
            scraped.RecordRequest(Labels("client-" + (i / 5), 200 + (i % 5)), i, i * 10, i * 100);
        }

        _buffer = new MemoryStream(4 * 1024 * 1024);
    }

    [Benchmark]
    public void RecordRequest_existing_series() => _istio.RecordRequest(_labels, 12.5, 512, 4096);

    /// <summary>A sampled request: its duration carries a trace-id exemplar (this path may allocate; unsampled ones must not).</summary>
    [Benchmark]
    public void RecordRequest_existing_series_with_exemplar() => _istio.RecordRequest(_labels, 12.5, 512, 4096, "0af7651916cd43dd8448eb211c80319c");

    [Benchmark]
    public long Scrape_1000_series()
    {
        _buffer.SetLength(0);
        _scrapeRegistry.WriteAsync(_buffer, ExpositionFormat.PrometheusText).GetAwaiter().GetResult();
        return _buffer.Length;
    }

    [Benchmark]
    public long Scrape_1000_series_OpenMetrics()
    {
        _buffer.SetLength(0);
        _scrapeRegistry.WriteAsync(_buffer, ExpositionFormat.OpenMetricsText).GetAwaiter().GetResult();
        return _buffer.Length;
    }

    private static RequestLabels Labels(string source, int code) => new()
    {
        Workload = new IstioWorkloadLabels
        {
            Reporter = "destination",
            SourceWorkload = source,
            SourceWorkloadNamespace = "shop",
            SourcePrincipal = "spiffe://cluster.local/ns/shop/sa/" + source,
            SourceApp = source,
            SourceVersion = "v1",
            DestinationWorkload = "cart",
            DestinationWorkloadNamespace = "shop",
            DestinationPrincipal = "spiffe://cluster.local/ns/shop/sa/cart",
            DestinationApp = "cart",
            DestinationVersion = "v2",
            DestinationService = "cart.shop.svc.cluster.local",
            DestinationServiceName = "cart",
            DestinationServiceNamespace = "shop",
        },
        RequestProtocol = "http",
        ResponseCode = code,
        ConnectionSecurityPolicy = "mutual_tls",
    };
}
