using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>Istio's request metrics and the proxy's own, read from /metrics after real traffic through two sidecars.</summary>
public sealed class PrometheusMetricsTests(TelemetryMesh mesh) : IClassFixture<TelemetryMesh>
{
    private const string BillingFqdn = "billing.test.svc.cluster.local";
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_request_is_counted_by_the_source_on_outbound_and_by_the_destination_on_inbound()
    {
        (string, string)[] source = [("reporter", "source"), ("destination_service", BillingFqdn), ("response_code", "200"), ("response_flags", "-")];
        (string, string)[] destination = [("reporter", "destination"), ("destination_service", BillingFqdn), ("response_code", "200")];
        var storeBefore = await Exposition.ScrapeAsync(mesh.Client, mesh.Store.Stats);
        var billingBefore = await Exposition.ScrapeAsync(mesh.Client, mesh.Billing.Stats);

        for (var i = 0; i < 3; i++)
        {
            using var response = await mesh.Client.SendAsync(mesh.ToService("billing", HttpMethod.Get, "/hello"), Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var store = await Exposition.ScrapeAsync(mesh.Client, mesh.Store.Stats);
        var billing = await Exposition.ScrapeAsync(mesh.Client, mesh.Billing.Stats);
        Assert.Equal(3, store.Sum("istio_requests_total", source) - storeBefore.Sum("istio_requests_total", source));
        Assert.Equal(3, billing.Sum("istio_requests_total", destination) - billingBefore.Sum("istio_requests_total", destination));

        // Each side reports only its own role.
        Assert.Empty(store.Find("istio_requests_total", ("reporter", "destination")));
        Assert.Empty(billing.Find("istio_requests_total", ("reporter", "source")));

        var sourceSeries = Assert.Single(store.Find("istio_requests_total", source));
        Assert.Equal("store", sourceSeries.Labels["source_workload"]);
        Assert.Equal("test", sourceSeries.Labels["source_workload_namespace"]);
        Assert.Equal("spiffe://cluster.local/ns/test/sa/store", sourceSeries.Labels["source_principal"]);
        Assert.Equal("billing", sourceSeries.Labels["destination_service_name"]);
        Assert.Equal("test", sourceSeries.Labels["destination_service_namespace"]);
        Assert.Equal("unknown", sourceSeries.Labels["destination_principal"]); // plaintext: no identity was proven
        Assert.Equal("http", sourceSeries.Labels["request_protocol"]);
        Assert.Equal("", sourceSeries.Labels["grpc_response_status"]);
        Assert.Equal("unknown", sourceSeries.Labels["connection_security_policy"]); // Istio: reporter=source never knows the policy

        var destinationSeries = Assert.Single(billing.Find("istio_requests_total", destination));
        Assert.Equal("billing", destinationSeries.Labels["destination_workload"]);
        Assert.Equal("test", destinationSeries.Labels["destination_workload_namespace"]);
        Assert.Equal("spiffe://cluster.local/ns/test/sa/billing", destinationSeries.Labels["destination_principal"]);
        Assert.Equal("unknown", destinationSeries.Labels["source_principal"]);
        Assert.Equal("none", destinationSeries.Labels["connection_security_policy"]);

        // The duration histogram counted the same requests.
        Assert.Equal(3, store.Sum("istio_request_duration_milliseconds_count", source) - storeBefore.Sum("istio_request_duration_milliseconds_count", source));
        Assert.True(store.Sum("istio_request_duration_milliseconds_sum", source) > 0);
    }

    [Fact]
    public async Task An_unknown_host_is_NR_and_a_refused_upstream_is_UF_after_its_retries()
    {
        var before = await Exposition.ScrapeAsync(mesh.Client, mesh.Store.Stats);
        using (var response = await mesh.Client.SendAsync(mesh.ToService("nowhere.example", HttpMethod.Get, "/"), Ct))
        {
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode); // REGISTRY_ONLY egress denial
        }

        using (var response = await mesh.Client.SendAsync(mesh.ToService("refusing", HttpMethod.Get, "/"), Ct))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }

        var after = await Exposition.ScrapeAsync(mesh.Client, mesh.Store.Stats);
        (string, string)[] nr = [("reporter", "source"), ("response_code", "403"), ("response_flags", "NR"), ("destination_service_name", "BlackHoleCluster")];
        (string, string)[] uf = [("reporter", "source"), ("response_code", "503"), ("response_flags", "UF,URX"), ("destination_service", "refusing.test.svc.cluster.local")];
        Assert.Equal(1, after.Sum("istio_requests_total", nr) - before.Sum("istio_requests_total", nr));
        Assert.Equal(1, after.Sum("istio_requests_total", uf) - before.Sum("istio_requests_total", uf));

        // No label carries the host the app asked for: a caller cannot mint series.
        Assert.DoesNotContain(after, s => s.Labels.Values.Any(v => v.Contains("nowhere", StringComparison.Ordinal)));

        (string, string)[] cluster = [("cluster", "outbound|80||refusing.test.svc.cluster.local")];
        Assert.Equal(1, after.Sum("meshproxy_upstream_connect_failures_total", cluster) - before.Sum("meshproxy_upstream_connect_failures_total", cluster));
    }

    [Fact]
    public async Task Body_sizes_come_from_content_length_or_are_counted_when_undeclared()
    {
        (string, string)[] echo = [("reporter", "source"), ("destination_service", BillingFqdn), ("response_code", "200")];
        (string, string)[] inbound = [("reporter", "destination"), ("response_code", "200")];
        var storeBefore = await Exposition.ScrapeAsync(mesh.Client, mesh.Store.Stats);
        var billingBefore = await Exposition.ScrapeAsync(mesh.Client, mesh.Billing.Stats);

        // Declared request (Content-Length 1000); the echo answers chunked, so the response is counted.
        using (var request = mesh.ToService("billing", HttpMethod.Post, "/echo"))
        {
            request.Content = new ByteArrayContent(new byte[1000]);
            using var response = await mesh.Client.SendAsync(request, Ct);
            Assert.Equal(1000, (await response.Content.ReadAsByteArrayAsync(Ct)).Length);
        }

        // Undeclared request body (chunked): counted on the way in.
        using (var request = mesh.ToService("billing", HttpMethod.Post, "/echo"))
        {
            request.Content = new StreamContent(new UnknownLengthStream(new byte[2500]));
            request.Headers.TransferEncodingChunked = true;
            using var response = await mesh.Client.SendAsync(request, Ct);
            Assert.Equal(2500, (await response.Content.ReadAsByteArrayAsync(Ct)).Length);
        }

        var store = await Exposition.ScrapeAsync(mesh.Client, mesh.Store.Stats);
        var billing = await Exposition.ScrapeAsync(mesh.Client, mesh.Billing.Stats);
        Assert.Equal(3500, store.Sum("istio_request_bytes_sum", echo) - storeBefore.Sum("istio_request_bytes_sum", echo));
        Assert.Equal(3500, store.Sum("istio_response_bytes_sum", echo) - storeBefore.Sum("istio_response_bytes_sum", echo));
        Assert.Equal(3500, billing.Sum("istio_request_bytes_sum", inbound) - billingBefore.Sum("istio_request_bytes_sum", inbound));
        Assert.Equal(3500, billing.Sum("istio_response_bytes_sum", inbound) - billingBefore.Sum("istio_response_bytes_sum", inbound));
    }

    [Fact]
    public async Task The_proxy_reports_its_config_version_connections_and_process()
    {
        using (var response = await mesh.Client.SendAsync(mesh.ToService("billing", HttpMethod.Get, "/hello"), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var store = await Exposition.ScrapeAsync(mesh.Client, mesh.Store.Stats, "/stats/prometheus");
        var version = mesh.Store.Store.Current.Version;
        Assert.Equal(1, store.Sum("meshproxy_config_info", ("version", version)));
        var applied = store.Sum("meshproxy_config_applied_timestamp_seconds");
        Assert.InRange(applied, mesh.Store.Store.Current.AppliedAt.ToUnixTimeSeconds() - 1, mesh.Store.Store.Current.AppliedAt.ToUnixTimeSeconds() + 1);
        Assert.True(store.Sum("meshproxy_listener_connections_total", ("listener", "outbound")) >= 1);
        Assert.True(store.Sum("meshproxy_listener_connections_active", ("listener", "stats")) >= 1); // this scrape's own connection
        Assert.True(store.Sum("process_resident_memory_bytes") > 0);
        Assert.True(store.Sum("dotnet_gc_allocated_bytes_total") > 0); // heap size is 0 until the first collection
        Assert.Equal(0, store.Sum("meshproxy_config_rejections_total"));
    }

    [Fact]
    public async Task Promtool_accepts_the_exposition_after_traffic()
    {
        using (var response = await mesh.Client.SendAsync(mesh.ToService("billing", HttpMethod.Get, "/hello"), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using (var response = await mesh.Client.SendAsync(mesh.ToService("nowhere", HttpMethod.Get, "/"), Ct))
        {
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode); // REGISTRY_ONLY egress denial
        }

        foreach (var stats in new[] { mesh.Store.Stats, mesh.Billing.Stats })
        {
            var text = await mesh.Client.GetStringAsync(new Uri($"http://{stats}/metrics"), Ct);
            Assert.Contains("istio_requests_total{", text, StringComparison.Ordinal);
            var (exitCode, output) = await Promtool.CheckMetricsAsync(text);

            // promtool prefers seconds; Istio's name is Istio's, and every Istio dashboard uses it.
            Assert.Equal([Promtool.IstioNameLint], Promtool.Findings(output));
            Assert.True(exitCode is 0 or 3, $"promtool exit {exitCode}:\n{output}");
        }
    }

    /// <summary>A stream that will not tell its length, so HttpClient must send it chunked.</summary>
    private sealed class UnknownLengthStream(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;
    }
}
