using System.Diagnostics;
using System.Net;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>A real Prometheus server scrapes a sidecar's stats port while traffic flows, and answers queries over what it stored.</summary>
public sealed class PrometheusServerScrapeTests(TelemetryMesh mesh) : IClassFixture<TelemetryMesh>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Prometheus_scrapes_the_sidecar_under_traffic_and_returns_istio_requests_total()
    {
        var work = Directory.CreateTempSubdirectory("meshproxy-prom-");
        var promPort = FreePort.Get();
        await File.WriteAllTextAsync(Path.Combine(work.FullName, "prometheus.yml"), $"""
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: sidecars
                metrics_path: /stats/prometheus
                static_configs:
                  - targets: ['{mesh.Store.Stats}', '{mesh.Billing.Stats}']
            """, Ct);
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
        using var traffic = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var load = Task.Run(async () =>
        {
            while (!traffic.IsCancellationRequested)
            {
                using var response = await mesh.Client.SendAsync(mesh.ToService("billing", HttpMethod.Get, "/hello"), traffic.Token);
                await Task.Delay(20, traffic.Token);
            }
        }, traffic.Token);
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{promPort}"), Timeout = TimeSpan.FromSeconds(5) };
            var deadline = Stopwatch.StartNew();
            JsonElement[] source = [], destination = [];
            double rate = 0;
            while (deadline.Elapsed < TimeSpan.FromSeconds(60) && (source.Length == 0 || destination.Length == 0 || rate <= 0))
            {
                Assert.False(prometheus.HasExited, "prometheus exited:\n" + log);
                await Task.Delay(500, Ct);
                source = await QueryAsync(http, "istio_requests_total{reporter=\"source\",destination_service=\"billing.test.svc.cluster.local\",response_code=\"200\"}");
                destination = await QueryAsync(http, "istio_requests_total{reporter=\"destination\",destination_workload=\"billing\",response_code=\"200\"}");
                var rates = await QueryAsync(http, "sum(rate(istio_requests_total{reporter=\"source\"}[5s]))");
                rate = rates.Length == 1 ? double.Parse(rates[0].GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture) : 0;
            }

            var series = Assert.Single(source);
            Assert.Equal("store", series.GetProperty("metric").GetProperty("source_workload").GetString());
            Assert.Equal(mesh.Store.Stats.ToString(), series.GetProperty("metric").GetProperty("instance").GetString());
            Assert.True(double.Parse(series.GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture) > 0);
            Assert.Equal(mesh.Billing.Stats.ToString(), Assert.Single(destination).GetProperty("metric").GetProperty("instance").GetString());
            Assert.True(rate > 0, "Prometheus computed no request rate");

            // Both targets healthy: the exposition parsed without a scrape error.
            var up = await QueryAsync(http, "up{job=\"sidecars\"}");
            Assert.Equal(2, up.Length);
            Assert.All(up, u => Assert.Equal("1", u.GetProperty("value")[1].GetString()));
        }
        finally
        {
            traffic.Cancel();
            await load.ContinueWith(_ => { }, TaskScheduler.Default);
            if (!prometheus.HasExited)
            {
                prometheus.Kill(entireProcessTree: true);
                await prometheus.WaitForExitAsync(CancellationToken.None);
            }

            work.Delete(recursive: true);
        }
    }

    private static async Task<JsonElement[]> QueryAsync(HttpClient http, string query)
    {
        try
        {
            using var response = await http.GetAsync("/api/v1/query?query=" + Uri.EscapeDataString(query), Ct);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                return [];
            }

            var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement;
            return [.. json.GetProperty("data").GetProperty("result").EnumerateArray().Select(e => e.Clone())];
        }
        catch (HttpRequestException)
        {
            return []; // not listening yet
        }
    }
}
