using MeshProxy.Metrics.Runtime;
using MeshProxy.Metrics.Istio;
using Prometheus;

namespace MeshProxy.Metrics.Tests;

public sealed class ExpositionTests
{
    [Fact]
    public void The_first_scrape_already_has_the_process_figures_read_from_proc()
    {
        // The /proc reading and its export run in one callback: prometheus-net orders its before-collect
        // callbacks arbitrarily, and a reading exported by a separate callback was missing from the first scrape.
        var registry = new MetricsRegistry();
        Assert.True(ProcessMetrics.Register(registry));

        var text = Scrape.Text(registry);

        Assert.Matches("\nprocess_resident_memory_bytes [1-9][0-9.e+]*\n", text);
        Assert.Matches("\nprocess_open_fds [1-9][0-9.e+]*\n", text);
        Assert.Matches("\nprocess_max_fds [1-9][0-9.e+]*\n", text);
    }

    [Fact]
    public void Istio_series_past_the_limit_are_dropped_and_counted()
    {
        var registry = new MetricsRegistry(new MetricsOptions { MaxSeriesPerFamily = 3 });
        var istio = new IstioMetrics(registry);
        for (var i = 0; i < 10; i++)
        {
            istio.RecordRequest(Scrape.Request(200 + i), 1, 1, 1);
        }

        // An existing series keeps working after the limit is reached.
        istio.RecordRequest(Scrape.Request(200), 1, 1, 1);

        var text = Scrape.Text(registry);
        Assert.Matches("istio_requests_total\\{[^}]*response_code=\"200\"[^}]*\\} 2\n", text);
        Assert.Matches("istio_requests_total\\{[^}]*response_code=\"202\"[^}]*\\} 1\n", text);
        Assert.DoesNotContain("response_code=\"203\"", text);
        Assert.Contains("# TYPE meshproxy_metrics_series_dropped_total counter\n", text);
        Assert.Contains("meshproxy_metrics_series_dropped_total{family=\"istio_requests\"} 7\n", text);
        Assert.Contains("meshproxy_metrics_series_dropped_total{family=\"istio_tcp\"} 0\n", text);
    }

    [Fact]
    public void Equal_values_in_different_string_instances_share_one_series()
    {
        var registry = new MetricsRegistry();
        var istio = new IstioMetrics(registry);
        istio.RecordRequest(Scrape.Request(200) with { ResponseFlags = new string('-', 1) }, 1, 1, 1);
        istio.RecordRequest(Scrape.Request(200) with { ResponseFlags = new string('-', 1) }, 1, 1, 1);

        Assert.Single(Scrape.Text(registry).Split('\n'), l => l.StartsWith("istio_requests_total{", StringComparison.Ordinal));
        Assert.Matches("istio_requests_total\\{[^}]*\\} 2\n", Scrape.Text(registry));
    }

    [Theory]
    [InlineData("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", true)] // Prometheus 2.x
    [InlineData("application/openmetrics-text; version=1.0.0", true)]
    [InlineData("text/plain;version=0.0.4", false)]
    [InlineData("text/plain, application/openmetrics-text;q=0.5", false)]
    [InlineData("application/openmetrics-text;q=0", false)]
    [InlineData("*/*", false)]
    [InlineData("", false)]
    [InlineData(null, false)]
    [InlineData("\"\u0001;;;===,,", false)]
    public void OpenMetrics_only_when_the_scraper_prefers_it(string? accept, bool openMetrics)
    {
        var format = MetricsExposition.Negotiate(accept);

        Assert.Equal(openMetrics ? ExpositionFormat.OpenMetricsText : ExpositionFormat.PrometheusText, format);
        Assert.StartsWith(openMetrics ? "application/openmetrics-text; version=1.0.0" : "text/plain; version=0.0.4", MetricsExposition.ContentTypeOf(format));
    }

    [Fact]
    public void A_sampled_requests_trace_id_is_an_exemplar_on_its_duration_bucket_in_OpenMetrics_only()
    {
        var registry = new MetricsRegistry();
        var istio = new IstioMetrics(registry);
        const string TraceId = "0af7651916cd43dd8448eb211c80319c";
        istio.RecordRequest(Scrape.Request(200), 3, 10, 10);
        istio.RecordRequest(Scrape.Request(200), 40, 10, 10, TraceId);

        var openMetrics = Scrape.OpenMetrics(registry);
        var text = Scrape.Text(registry);

        var withExemplar = Assert.Single(openMetrics.Split('\n'), l => l.Contains("# {", StringComparison.Ordinal));
        Assert.StartsWith("istio_request_duration_milliseconds_bucket{", withExemplar);
        Assert.Contains(",le=\"50.0\"} 2 # {trace_id=\"" + TraceId + "\"} 40.0 ", withExemplar);
        Assert.EndsWith("# EOF\n", openMetrics);
        Assert.DoesNotContain("trace_id", text);
        Assert.Contains(",le=\"50\"} 2\n", text);
    }

    [Fact]
    public void A_throwing_callback_loses_only_its_own_sample()
    {
        var registry = new MetricsRegistry();
        var broken = false;
        var count = 5.0;
        registry.CallbackGauge("test_broken", "b", () => broken ? throw new InvalidOperationException("boom") : 7);
        registry.CallbackGauge("test_fine", "f", () => 42);
        registry.CallbackCounter("test_reads_total", "r", ["source"], [new CallbackSample(["a"], () => count)]);

        var before = Scrape.Text(registry);
        broken = true;
        count = 9;
        var text = Scrape.Text(registry);

        Assert.Contains("\ntest_broken 7\n", before);
        Assert.DoesNotContain("\ntest_broken ", text);
        Assert.Contains("test_fine 42\n", text);
        Assert.Contains("test_reads_total{source=\"a\"} 9\n", text);
    }

    [Fact]
    public void Istio_request_metrics_carry_istios_labels_in_istios_order()
    {
        var registry = new MetricsRegistry();
        var istio = new IstioMetrics(registry);
        var labels = Scrape.Request(503);
        istio.RecordRequest(labels, 12.5, 300, 4000);
        istio.RecordRequest(labels, 0.2, -1, 10);

        var text = Scrape.Text(registry);

        var expectedLabels = string.Join(",", IstioLabelNames.Request.Select(n => n + "=\""));
        var line = text.Split('\n').Single(l => l.StartsWith("istio_requests_total{", StringComparison.Ordinal));
        var names = line["istio_requests_total{".Length..line.IndexOf('}')].Split("\",").Select(p => p[..(p.IndexOf('=') + 2)]);
        Assert.Equal(expectedLabels, string.Join(",", names));
        Assert.Equal(25, IstioLabelNames.Request.Count);
        Assert.StartsWith("reporter=\"destination\",source_workload=\"frontend\",source_canonical_service=\"frontend\",source_canonical_revision=\"latest\",", line["istio_requests_total{".Length..]);
        Assert.EndsWith(",request_protocol=\"http\",response_code=\"503\",grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"} 2", line);
        Assert.Contains("istio_request_duration_milliseconds_bucket{", text);
        Assert.Contains("le=\"0.5\"} 1\n", text);
        Assert.Contains("le=\"3600000\"} 2\n", text);
        Assert.Contains(",connection_security_policy=\"mutual_tls\"} 12.7\n", text); // duration sum
        Assert.Contains(",connection_security_policy=\"mutual_tls\"} 300\n", text);  // request bytes sum, -1 recorded as 0
        Assert.Contains(",connection_security_policy=\"mutual_tls\"} 4010\n", text); // response bytes sum
    }

    [Fact]
    public void Istio_tcp_metrics_use_protocol_tcp_and_no_response_code()
    {
        var registry = new MetricsRegistry();
        var istio = new IstioMetrics(registry);
        var labels = Scrape.Tcp();
        istio.RecordTcpConnectionOpened(labels);
        istio.RecordTcpBytes(labels, 100, 40);
        istio.RecordTcpBytes(labels, 1, 2);
        istio.RecordTcpConnectionClosed(labels);

        var text = Scrape.Text(registry);

        Assert.Matches("istio_tcp_sent_bytes_total\\{reporter=\"destination\",[^}]*,request_protocol=\"tcp\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"\\} 101\n", text);
        Assert.Matches("istio_tcp_received_bytes_total\\{[^}]*\\} 42\n", text);
        Assert.Matches("istio_tcp_connections_opened_total\\{[^}]*\\} 1\n", text);
        Assert.Matches("istio_tcp_connections_closed_total\\{[^}]*\\} 1\n", text);
        Assert.DoesNotContain("response_code", text.Split('\n').First(l => l.StartsWith("istio_tcp_sent", StringComparison.Ordinal)));
    }

    [Fact]
    public void Istio_default_buckets_are_envoys()
    {
        Assert.Equal(
            [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000],
            IstioMetrics.DefaultBuckets);
    }
}
