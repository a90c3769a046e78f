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
        await using var prometheus = await PrometheusServer.StartAsync($"""
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: sidecars
                metrics_path: /stats/prometheus
                static_configs:
                  - targets: ['{mesh.Store.Stats}', '{mesh.Billing.Stats}']
            """);
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
            var deadline = Stopwatch.StartNew();
            JsonElement[] source = [], destination = [];
            double rate = 0;
            while (deadline.Elapsed < TimeSpan.FromSeconds(60) && (source.Length == 0 || destination.Length == 0 || rate <= 0))
            {
                Assert.False(prometheus.HasExited, "prometheus exited:\n" + prometheus.Log);
                await Task.Delay(500, Ct);
                source = await prometheus.QueryAsync("istio_requests_total{reporter=\"source\",destination_service=\"billing.test.svc.cluster.local\",response_code=\"200\"}", Ct);
                destination = await prometheus.QueryAsync("istio_requests_total{reporter=\"destination\",destination_workload=\"billing\",response_code=\"200\"}", Ct);
                var rates = await prometheus.QueryAsync("sum(rate(istio_requests_total{reporter=\"source\"}[5s]))", Ct);
                rate = rates.Length == 1 ? double.Parse(rates[0].GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture) : 0;
            }

            var series = Assert.Single(source);
            Assert.Equal("store", series.GetProperty("metric").GetProperty("source_workload").GetString());
            Assert.Equal(mesh.Store.Stats.ToString(), series.GetProperty("metric").GetProperty("instance").GetString());
            Assert.True(double.Parse(series.GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture) > 0);
            Assert.Equal(mesh.Billing.Stats.ToString(), Assert.Single(destination).GetProperty("metric").GetProperty("instance").GetString());
            Assert.True(rate > 0, "Prometheus computed no request rate");

            // Both targets healthy: the exposition parsed without a scrape error.
            var up = await prometheus.QueryAsync("up{job=\"sidecars\"}", Ct);
            Assert.Equal(2, up.Length);
            Assert.All(up, u => Assert.Equal("1", u.GetProperty("value")[1].GetString()));
        }
        finally
        {
            traffic.Cancel();
            await load.ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }
}
