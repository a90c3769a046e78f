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
    public void Recording_tcp_bytes_and_streams_on_existing_series_allocates_nothing()
    {
        var istio = new IstioMetrics(new MetricsRegistry());
        var tcp = Scrape.Tcp();
        RecordTcp(istio, tcp, 10);

        var before = GC.GetAllocatedBytesForCurrentThread();
        RecordTcp(istio, tcp, 10_000);
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

    private static void RecordTcp(IstioMetrics istio, in TcpLabels tcp, int times)
    {
        for (var i = 0; i < times; i++)
        {
            istio.RecordTcpBytes(tcp, i, i);
            var meter = istio.OpenTcpStream(tcp);
            meter.AddSent(i);
            meter.AddReceived(i);
            meter.Close();
        }
    }
}
