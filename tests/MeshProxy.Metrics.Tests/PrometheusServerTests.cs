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

    [Fact]
    public async Task A_real_prometheus_scrapes_istio_metrics_and_computes_a_quantile()
    {
        var ct = TestContext.Current.CancellationToken;
        var registry = PromtoolTests.FullRegistry(out var istio);
        var labels = Scrape.Request(200) with { Workload = Scrape.Workload(sourceWorkload: "prometheus-test") };

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        await using var app = builder.Build();
        app.MapGet("/metrics", async (HttpContext context) =>
        {
            context.Response.ContentType = MetricsRegistry.ContentType;
            await registry.WriteToAsync(context.Response.Body, context.RequestAborted);
        });
        await app.StartAsync(ct);
        var appAddress = new Uri(app.Urls.First());

        var work = Directory.CreateTempSubdirectory("meshproxy-prom-");
        var promPort = FreePort();
        await File.WriteAllTextAsync(Path.Combine(work.FullName, "prometheus.yml"), $"""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: meshproxy
                scrape_interval: 1s
                static_configs:
                  - targets: ['127.0.0.1:{appAddress.Port}']
            """, ct);

        var start = new ProcessStartInfo("/usr/bin/prometheus")
        {
            ArgumentList =
            {
                "--config.file=" + Path.Combine(work.FullName, "prometheus.yml"),
                "--storage.tsdb.path=" + Path.Combine(work.FullName, "data"),
                $"--web.listen-address=127.0.0.1:{promPort}",
                "--log.level=warn",
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var prometheus = Process.Start(start) ?? throw new InvalidOperationException("prometheus did not start");
        var log = new System.Text.StringBuilder();
        prometheus.OutputDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        prometheus.ErrorDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        prometheus.BeginOutputReadLine();
        prometheus.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{promPort}"), Timeout = TimeSpan.FromSeconds(5) };
            var durations = new[] { 3.0, 7.0, 40.0, 40.0, 90.0, 300.0, 2.0, 8.0, 20.0, 60.0 };
            foreach (var d in durations)
            {
                istio.RecordRequest(labels, d, 100, 1000);
            }

            var deadline = Stopwatch.StartNew();
            double? count = null;
            double? p90 = null;
            while (deadline.Elapsed < Deadline && (count != durations.Length || p90 is null))
            {
                Assert.False(prometheus.HasExited, "prometheus exited:\n" + log);
                await Task.Delay(500, ct);
                count = await Query(http, "istio_requests_total{reporter=\"destination\",response_code=\"200\",source_workload=\"prometheus-test\"}", ct);
                p90 = await Query(http, "histogram_quantile(0.9, sum by (le) (istio_request_duration_milliseconds_bucket{source_workload=\"prometheus-test\"}))", ct);
            }

            Assert.True(count == durations.Length, $"istio_requests_total was {count?.ToString() ?? "absent"} after {deadline.Elapsed}; log:\n{log}");
            Assert.NotNull(p90);
            Assert.False(double.IsNaN(p90.Value));

            // 9 of 10 observations are <= 100 ms, so the 0.9 quantile lies in the (50, 100] bucket.
            Assert.InRange(p90.Value, 50, 100);
        }
        finally
        {
            if (!prometheus.HasExited)
            {
                prometheus.Kill(entireProcessTree: true);
                await prometheus.WaitForExitAsync(CancellationToken.None);
            }

            await app.StopAsync(CancellationToken.None);
            work.Delete(recursive: true);
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

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
