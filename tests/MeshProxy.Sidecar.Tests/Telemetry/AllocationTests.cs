using MeshProxy.Config.Parsing;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>The per-request telemetry path allocates nothing when access log and tracing are off (the benchmark shows the same with timings).</summary>
public sealed class AllocationTests
{
    private const string Yaml = """
        apiVersion: meshproxy.io/v1alpha1
        kind: Sidecar
        metadata: { name: store, namespace: shop }
        spec:
          workload: { serviceAccount: store, labels: { app: store, version: v1 } }
          app: { port: 8080, protocol: HTTP }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: billing, namespace: shop }
        spec:
          ports: [{ port: 80, protocol: HTTP }]
          endpoints:
            - { address: 10.0.0.7, port: 8080 }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: MeshConfig
        metadata: { name: default, namespace: meshproxy-system }
        spec:
          accessLog: { enabled: false }
          tracing: { sampling: 0 }
        """;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Start_and_finish_of_a_request_allocate_nothing(bool outbound)
    {
        var store = new SnapshotStore();
        var snapshot = SnapshotBuilder.Build(ResourceParser.ParseText(Yaml, "alloc.yaml"), "v1", "alloc.yaml", DateTimeOffset.UtcNow);
        store.Apply(snapshot);
        using var telemetry = new SidecarTelemetry(store, NullLoggerFactory.Instance);
        var labels = new SnapshotLabels(snapshot);
        var cluster = outbound ? snapshot.Services.VirtualHosts.Single().DefaultCluster : snapshot.InboundCluster;
        var context = new DefaultHttpContext();
        context.Request.Method = HttpMethods.Get;
        context.Request.Path = "/cart";
        context.Request.Headers.Host = "billing";
        context.Request.Protocol = "HTTP/1.1";
        context.Response.StatusCode = 200;
        context.Response.ContentLength = 512;

        void Once()
        {
            var record = telemetry.Start(context, labels, outbound);
            record.Cluster = cluster;
            telemetry.Finish(context, labels, ref record, outbound);
        }

        for (var i = 0; i < 100; i++)
        {
            Once(); // series created, identity cache filled, code tiered
        }

        Allocations.AssertNone(Once, calls: 10_000);
        Assert.Equal(30_100, CountRequests(telemetry)); // and every one of them was recorded
    }

    private static double CountRequests(SidecarTelemetry telemetry)
    {
        using var buffer = new MemoryStream();
        MeshProxy.Metrics.MetricsExposition.WriteAsync(telemetry.Registry, buffer, Prometheus.ExpositionFormat.PrometheusText).GetAwaiter().GetResult();
        return Exposition.Parse(System.Text.Encoding.UTF8.GetString(buffer.ToArray())).Sum("istio_requests_total");
    }
}
