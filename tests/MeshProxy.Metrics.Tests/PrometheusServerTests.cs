using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using MeshProxy.Metrics.Istio;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Metrics.Tests;

public sealed class PrometheusServerTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(45);

    /// <summary>
    /// One registry, scraped by one Prometheus as two jobs: "openmetrics" with Prometheus' own Accept header (it
    /// prefers OpenMetrics, so negotiation answers that), "text" through a path that asks for the text format the
    /// way an older scraper would. Both must be stored and queryable; the trace-id exemplars of the sampled
    /// requests must come back from query_exemplars for the OpenMetrics job, and only there.
    /// </summary>
    [Fact]
    public async Task A_real_prometheus_scrapes_both_formats_computes_a_quantile_and_stores_the_exemplars()
    {
        var ct = TestContext.Current.CancellationToken;
        var registry = PromtoolTests.FullRegistry(out var istio);
        var labels = Scrape.Request(200) with { Workload = Scrape.Workload(sourceWorkload: "prometheus-test") };
        var served = new System.Collections.Concurrent.ConcurrentDictionary<string, string>();

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        await using var app = builder.Build();
        app.MapGet("/metrics", async (HttpContext context) =>
        {
            await registry.ServeAsync(context);
            served["openmetrics"] = context.Response.ContentType!;
        });
        app.MapGet("/metrics-as-text", async (HttpContext context) =>
        {
            context.Request.Headers.Accept = "text/plain;version=0.0.4;q=1,*/*;q=0.1";
            await registry.ServeAsync(context);
            served["text"] = context.Response.ContentType!;
        });
        await app.StartAsync(ct);
        var appAddress = new Uri(app.Urls.First());

        await using var prometheus = await PrometheusServer.StartAsync($"""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: openmetrics
                scrape_interval: 1s
                static_configs:
                  - targets: ['127.0.0.1:{appAddress.Port}']
              - job_name: text
                scrape_interval: 1s
                metrics_path: /metrics-as-text
                static_configs:
                  - targets: ['127.0.0.1:{appAddress.Port}']
            """, "--enable-feature=exemplar-storage");
        try
        {
            var http = prometheus.Http;
            // Two sampled requests: 40 ms lands in the (25, 50] bucket, 300 ms in (250, 500].
            const string Slow = "4bf92f3577b34da6a3ce929d0e0e4736", Medium = "0af7651916cd43dd8448eb211c80319c";
            var durations = new[] { 3.0, 7.0, 40.0, 40.0, 90.0, 300.0, 2.0, 8.0, 20.0, 60.0 };
            foreach (var d in durations)
            {
                istio.RecordRequest(labels, d, 100, 1000, d == 300.0 ? Slow : null);
            }

            istio.RecordRequest(labels with { ResponseCode = 201 }, 40, 100, 1000, Medium);

            foreach (var job in new[] { "openmetrics", "text" })
            {
                var deadline = Stopwatch.StartNew();
                double? count = null;
                double? p90 = null;
                while (deadline.Elapsed < Deadline && (count != durations.Length || p90 is null))
                {
                    Assert.False(prometheus.HasExited, "prometheus exited:\n" + prometheus.Log);
                    await Task.Delay(500, ct);
                    count = await Query(http, $"istio_requests_total{{job=\"{job}\",reporter=\"destination\",response_code=\"200\",source_workload=\"prometheus-test\"}}", ct);
                    p90 = await Query(http, $"histogram_quantile(0.9, sum by (le) (istio_request_duration_milliseconds_bucket{{job=\"{job}\",response_code=\"200\",source_workload=\"prometheus-test\"}}))", ct);
                }

                Assert.True(count == durations.Length, $"{job}: istio_requests_total was {count?.ToString() ?? "absent"} after {deadline.Elapsed}; log:\n{prometheus.Log}");
                Assert.NotNull(p90);
                Assert.False(double.IsNaN(p90.Value));

                // 9 of 10 observations are <= 100 ms, so the 0.9 quantile lies in the (50, 100] bucket.
                Assert.InRange(p90.Value, 50, 100);
                Assert.Equal(1, await Query(http, $"up{{job=\"{job}\"}}", ct));
            }

            Assert.StartsWith("application/openmetrics-text; version=1.0.0", served["openmetrics"]);
            Assert.StartsWith("text/plain; version=0.0.4", served["text"]);

            var exemplars = await Exemplars(http, "istio_request_duration_milliseconds_bucket{job=\"openmetrics\",source_workload=\"prometheus-test\"}", ct);
            Assert.Contains((Slow, "500.0", 300.0), exemplars); // OpenMetrics writes bounds as floats
            Assert.Contains((Medium, "50.0", 40.0), exemplars);
            Assert.DoesNotContain(exemplars, e => e.TraceId != Slow && e.TraceId != Medium);
            Assert.Empty(await Exemplars(http, "istio_request_duration_milliseconds_bucket{job=\"text\"}", ct));
            Assert.Empty(await Exemplars(http, "istio_requests_total{job=\"openmetrics\"}", ct));
        }
        finally
        {
            await app.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>The value of the single sample an instant query returns, or null while there is none.</summary>
    private static async Task<double?> Query(HttpClient http, string promql, CancellationToken ct)
    {
        try
        {
            using var response = await http.GetAsync("/api/v1/query?query=" + Uri.EscapeDataString(promql), ct);
            if (!response.IsSuccessStatusCode)
            {
                return null;
            }

            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
            var result = json.RootElement.GetProperty("data").GetProperty("result");
            if (result.GetArrayLength() != 1)
            {
                return null;
            }

            var value = result[0].GetProperty("value")[1].GetString()!;
            return double.Parse(value, CultureInfo.InvariantCulture);
        }
        catch (HttpRequestException)
        {
            return null; // not listening yet
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>The exemplars Prometheus stored for the series <paramref name="selector"/> selects: trace id, bucket bound, value.</summary>
    private static async Task<List<(string TraceId, string Le, double Value)>> Exemplars(HttpClient http, string selector, CancellationToken ct)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var url = $"/api/v1/query_exemplars?query={Uri.EscapeDataString(selector)}&start={now - 600}&end={now + 60}";
        using var response = await http.GetAsync(url, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.IsSuccessStatusCode, body);
        using var json = JsonDocument.Parse(body);
        var found = new List<(string, string, double)>();
        foreach (var series in json.RootElement.GetProperty("data").EnumerateArray())
        {
            var le = series.GetProperty("seriesLabels").TryGetProperty("le", out var bound) ? bound.GetString()! : "";
            foreach (var exemplar in series.GetProperty("exemplars").EnumerateArray())
            {
                found.Add((
                    exemplar.GetProperty("labels").GetProperty("trace_id").GetString()!,
                    le,
                    double.Parse(exemplar.GetProperty("value").GetString()!, CultureInfo.InvariantCulture)));
            }
        }

        return found;
    }
}
