using System.Diagnostics;
using MeshProxy.Metrics.Istio;
using MeshProxy.Metrics.Runtime;

namespace MeshProxy.Metrics.Tests;

public sealed class PromtoolTests
{
    [Fact]
    public async Task Promtool_accepts_a_full_exposition()
    {
        var registry = FullRegistry();
        var text = Scrape.Text(registry);

        // Make sure the lint covers what it should, not an empty document.
        foreach (var name in new[]
        {
            "istio_requests_total{", "istio_request_duration_milliseconds_bucket{", "istio_request_bytes_sum{",
            "istio_response_bytes_count{", "istio_tcp_sent_bytes_total{", "istio_tcp_received_bytes_total{",
            "istio_tcp_connections_opened_total{", "istio_tcp_connections_closed_total{",
            "\nprocess_cpu_seconds_total ", "\nprocess_resident_memory_bytes ", "\nprocess_virtual_memory_bytes ",
            "\nprocess_open_fds ", "\nprocess_max_fds ", "\nprocess_start_time_seconds ",
            "dotnet_gc_collections_total{generation=\"0\"}", "\ndotnet_gc_heap_size_bytes ", "\ndotnet_gc_allocated_bytes_total ",
            "\ndotnet_threadpool_threads ", "meshproxy_metrics_series_dropped_total{family=\"istio_requests\"}",
        })
        {
            Assert.Contains(name, text);
        }

        var (exitCode, output) = await Promtool.CheckMetricsAsync(text);

        // promtool's lint prefers seconds; Istio's name is fixed by Istio and every Istio dashboard uses it,
        // so that one finding, exactly, is expected. Anything else fails the test.
        Assert.Equal([Promtool.IstioNameLint], Promtool.Findings(output));
        Assert.True(exitCode is 0 or 3, $"promtool exit {exitCode} (3 means lint findings only):\n{output}");
    }

    [Fact]
    public async Task Promtool_rejects_a_broken_exposition()
    {
        // Proves the check above can fail: a counter without _total and a duplicate family are both reported.
        var (exitCode, output) = await Promtool.CheckMetricsAsync("# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n");

        Assert.True(exitCode != 0 || output.Contains("_total", StringComparison.Ordinal), output);
    }

    internal static MetricsRegistry FullRegistry() => FullRegistry(out _);

    internal static MetricsRegistry FullRegistry(out IstioMetrics istio)
    {
        var registry = new MetricsRegistry();
        Assert.True(ProcessMetrics.Register(registry));
        RuntimeMetrics.Register(registry);
        istio = new IstioMetrics(registry);
        foreach (var code in new[] { 200, 404, 503 })
        {
            istio.RecordRequest(Scrape.Request(code), code / 10.0, code * 3, code * 7);
            istio.RecordRequest(Scrape.Request(code, "source"), code / 7.0, code, code);
        }

        var grpc = Scrape.Request(200) with { RequestProtocol = "grpc", GrpcResponseStatus = "0" };
        istio.RecordRequest(grpc, 3, 5, 9);
        var tcp = Scrape.Tcp();
        istio.RecordTcpConnectionOpened(tcp);
        istio.RecordTcpBytes(tcp, 1234, 567);
        istio.RecordTcpConnectionClosed(tcp);

        // Label values that need escaping, and the float values Go's parser must read back.
        var escaped = registry.Factory.CreateGauge("meshproxy_test_escapes", "Label values that need escaping.", ["value"]);
        escaped.WithLabels("a\"b\\c\nd").Set(double.NaN);
        escaped.WithLabels("inf").Set(double.PositiveInfinity);
        escaped.WithLabels("big").Set(1e21);
        return registry;
    }
}
