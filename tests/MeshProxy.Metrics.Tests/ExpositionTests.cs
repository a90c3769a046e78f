using MeshProxy.Metrics.Istio;

namespace MeshProxy.Metrics.Tests;

public sealed class ExpositionTests
{
    [Fact]
    public void Label_values_escape_backslash_quote_and_newline()
    {
        var registry = new MetricsRegistry();
        var family = registry.CreateCounterFamily<LabelSet1>("test_escapes_total", "Help with \\ and\nnewline.", ["path"]);
        family.WithLabels(new LabelSet1("a\\b\"c\nd")).Increment();

        var text = Scrape.Text(registry);

        Assert.Contains("# HELP test_escapes_total Help with \\\\ and\\nnewline.\n", text);
        Assert.Contains("# TYPE test_escapes_total counter\n", text);
        Assert.Contains("test_escapes_total{path=\"a\\\\b\\\"c\\nd\"} 1\n", text);
    }

    [Fact]
    public void Histogram_buckets_are_cumulative_with_inf_sum_and_count()
    {
        var registry = new MetricsRegistry();
        var histogram = registry.CreateHistogram("test_latency_ms", "Latency.", [1, 10, 100]);
        histogram.Observe(0.5);
        histogram.Observe(1);   // le is inclusive
        histogram.Observe(5);
        histogram.Observe(50);
        histogram.Observe(1000);
        histogram.Observe(double.NaN); // ignored

        var text = Scrape.Text(registry);

        Assert.Contains(
            "# TYPE test_latency_ms histogram\n" +
            "test_latency_ms_bucket{le=\"1\"} 2\n" +
            "test_latency_ms_bucket{le=\"10\"} 3\n" +
            "test_latency_ms_bucket{le=\"100\"} 4\n" +
            "test_latency_ms_bucket{le=\"+Inf\"} 5\n" +
            "test_latency_ms_sum 1056.5\n" +
            "test_latency_ms_count 5\n",
            text);
    }

    [Fact]
    public void Labeled_histogram_puts_le_after_its_labels()
    {
        var registry = new MetricsRegistry();
        var family = registry.CreateHistogramFamily<LabelSet2>("test_size_bytes", "Size.", ["a", "b"], [0.25]);
        family.WithLabels(new LabelSet2("x", "y")).Observe(0.1);

        var text = Scrape.Text(registry);

        Assert.Contains("test_size_bytes_bucket{a=\"x\",b=\"y\",le=\"0.25\"} 1\n", text);
        Assert.Contains("test_size_bytes_bucket{a=\"x\",b=\"y\",le=\"+Inf\"} 1\n", text);
        Assert.Contains("test_size_bytes_sum{a=\"x\",b=\"y\"} 0.1\n", text);
        Assert.Contains("test_size_bytes_count{a=\"x\",b=\"y\"} 1\n", text);
    }

    [Fact]
    public void Families_are_sorted_by_name_and_series_by_label_values()
    {
        var registry = new MetricsRegistry();
        var zeta = registry.CreateCounterFamily<LabelSet1>("zeta_total", "z", ["k"]);
        var alpha = registry.CreateGauge("alpha", "a");
        zeta.WithLabels(new LabelSet1("b")).Increment();
        zeta.WithLabels(new LabelSet1("a")).Increment();
        zeta.WithLabels(new LabelSet1("c")).Increment();
        alpha.Set(1);

        var text = Scrape.Text(registry);
        var first = Scrape.Text(registry);

        Assert.Equal(first, text);
        Assert.True(text.IndexOf("alpha 1", StringComparison.Ordinal) < text.IndexOf("zeta_total{", StringComparison.Ordinal));
        var a = text.IndexOf("zeta_total{k=\"a\"}", StringComparison.Ordinal);
        var b = text.IndexOf("zeta_total{k=\"b\"}", StringComparison.Ordinal);
        var c = text.IndexOf("zeta_total{k=\"c\"}", StringComparison.Ordinal);
        Assert.True(a >= 0 && a < b && b < c, text);
    }

    [Theory]
    [InlineData(double.NaN, "NaN")]
    [InlineData(double.PositiveInfinity, "+Inf")]
    [InlineData(double.NegativeInfinity, "-Inf")]
    [InlineData(1e21, "1E+21")]
    [InlineData(-0.000125, "-0.000125")]
    [InlineData(0.1, "0.1")]
    [InlineData(3, "3")]
    public void Special_and_ordinary_floats_are_formatted_as_prometheus_reads_them(double value, string expected)
    {
        var registry = new MetricsRegistry();
        registry.CreateGauge("test_value", "v").Set(value);

        Assert.Contains($"test_value {expected}\n", Scrape.Text(registry));
    }

    [Fact]
    public void Series_past_the_limit_are_dropped_and_counted()
    {
        var registry = new MetricsRegistry(new MetricsOptions { MaxSeriesPerFamily = 3 });
        var family = registry.CreateCounterFamily<LabelSet1>("test_limited_total", "l", ["id"]);
        for (var i = 0; i < 10; i++)
        {
            family.WithLabels(new LabelSet1("id" + i)).Increment();
        }

        // An existing series keeps working after the limit is reached.
        family.WithLabels(new LabelSet1("id0")).Increment();

        var text = Scrape.Text(registry);
        Assert.Contains("test_limited_total{id=\"id0\"} 2\n", text);
        Assert.Contains("test_limited_total{id=\"id2\"} 1\n", text);
        Assert.DoesNotContain("id3", text);
        Assert.Contains("# TYPE meshproxy_metrics_series_dropped_total counter\n", text);
        Assert.Contains("meshproxy_metrics_series_dropped_total{family=\"test_limited_total\"} 7\n", text);
    }

    [Fact]
    public void Equal_values_in_different_string_instances_share_one_series()
    {
        var registry = new MetricsRegistry();
        var family = registry.CreateCounterFamily<LabelSet1>("test_same_total", "s", ["v"]);
        family.WithLabels(new LabelSet1(new string('x', 3))).Increment();
        family.WithLabels(new LabelSet1(new string('x', 3))).Increment();

        Assert.Contains("test_same_total{v=\"xxx\"} 2\n", Scrape.Text(registry));
    }

    [Fact]
    public void Bad_names_and_buckets_are_refused_at_registration()
    {
        var registry = new MetricsRegistry();
        Assert.Throws<ArgumentException>(() => registry.CreateCounter("requests", "counters end in _total"));
        Assert.Throws<ArgumentException>(() => registry.CreateGauge("9lives", "bad name"));
        Assert.Throws<ArgumentException>(() => registry.CreateCounterFamily<LabelSet1>("x_total", "h", ["__reserved"]));
        Assert.Throws<ArgumentException>(() => registry.CreateHistogramFamily<LabelSet1>("h1", "h", ["le"], [1]));
        Assert.Throws<ArgumentException>(() => registry.CreateHistogram("h2", "h", [2, 1]));
        Assert.Throws<ArgumentException>(() => registry.CreateCounterFamily<LabelSet2>("y_total", "h", ["only_one"]));
        registry.CreateGauge("dup", "h");
        Assert.Throws<ArgumentException>(() => registry.CreateGauge("dup", "h"));
        Assert.Throws<ArgumentOutOfRangeException>(() => registry.CreateCounter("neg_total", "h").Add(-1));
    }

    [Fact]
    public void A_throwing_callback_loses_only_its_own_sample()
    {
        var registry = new MetricsRegistry();
        registry.CreateCallbackGauge("test_broken", "b", () => throw new InvalidOperationException("boom"));
        registry.CreateCallbackGauge("test_fine", "f", () => 42);

        var text = Scrape.Text(registry);

        Assert.DoesNotContain("\ntest_broken ", text);
        Assert.Contains("# TYPE test_broken gauge\n", text);
        Assert.Contains("test_fine 42\n", text);
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

    [Fact]
    public async Task Stream_output_equals_buffer_output()
    {
        var registry = new MetricsRegistry();
        var istio = new IstioMetrics(registry);
        for (var i = 0; i < 200; i++)
        {
            istio.RecordRequest(Scrape.Request(200 + (i % 300)), i, i, i);
        }

        using var stream = new MemoryStream();
        await registry.WriteToAsync(stream, TestContext.Current.CancellationToken);

        Assert.True(stream.Length > 64 * 1024);
        Assert.Equal(Scrape.Text(registry), System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }
}
