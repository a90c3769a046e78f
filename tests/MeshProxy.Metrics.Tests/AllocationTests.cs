using MeshProxy.Metrics.Istio;

namespace MeshProxy.Metrics.Tests;

public sealed class AllocationTests
{
    [Fact]
    public void Recording_an_existing_istio_request_series_allocates_nothing()
    {
        var istio = new IstioMetrics(new MetricsRegistry());
        var labels = Scrape.Request(200);
        Record(istio, labels, 10); // creates the series and warms up (JIT tiering may allocate)

        var before = GC.GetAllocatedBytesForCurrentThread();
        Record(istio, labels, 10_000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
    }

    [Fact]
    public void Recording_existing_family_series_and_tcp_allocates_nothing()
    {
        var registry = new MetricsRegistry();
        var istio = new IstioMetrics(registry);
        var counters = registry.CreateCounterFamily<LabelSet2>("alloc_test_total", "a", ["a", "b"]);
        var histograms = registry.CreateHistogramFamily<LabelSet1>("alloc_test_ms", "a", ["a"], IstioMetrics.DefaultBuckets);
        var tcp = Scrape.Tcp();
        var a = "a";
        var b = "b";
        RecordMixed(istio, counters, histograms, tcp, a, b, 10);

        var before = GC.GetAllocatedBytesForCurrentThread();
        RecordMixed(istio, counters, histograms, tcp, a, b, 10_000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
    }

    private static void Record(IstioMetrics istio, in RequestLabels labels, int times)
    {
        for (var i = 0; i < times; i++)
        {
            istio.RecordRequest(labels, i * 0.1, 100 + i, 1000 + i);
        }
    }

    private static void RecordMixed(IstioMetrics istio, CounterFamily<LabelSet2> counters, HistogramFamily<LabelSet1> histograms, in TcpLabels tcp, string a, string b, int times)
    {
        for (var i = 0; i < times; i++)
        {
            counters.WithLabels(new LabelSet2(a, b)).Increment();
            histograms.WithLabels(new LabelSet1(a)).Observe(i);
            istio.RecordTcpBytes(tcp, i, i);
        }
    }
}
