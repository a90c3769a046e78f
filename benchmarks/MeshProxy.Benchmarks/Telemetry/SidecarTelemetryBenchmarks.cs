using BenchmarkDotNet.Attributes;
using MeshProxy.Config.Parsing;
using MeshProxy.Metrics.Istio;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.Benchmarks.Telemetry;

/// <summary>
/// The sidecar's per-request telemetry as the pipelines run it, on a real snapshot: Start + Finish with
/// access log off and tracing off (the load comparison's "off" apart from metrics), and the metrics
/// recording alone with the snapshot's interned labels. Both must allocate nothing.
/// </summary>
[MemoryDiagnoser]
public class SidecarTelemetryBenchmarks
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

    private SidecarTelemetry _telemetry = null!;
    private SidecarSnapshot _snapshot = null!;
    private SnapshotLabels _labels = null!;
    private Cluster _cluster = null!;
    private DefaultHttpContext _context = null!;

    [GlobalSetup]
    public void Setup()
    {
        var store = new SnapshotStore();
        _snapshot = SnapshotBuilder.Build(ResourceParser.ParseText(Yaml, "bench.yaml"), "v1", "bench.yaml", DateTimeOffset.UtcNow);
        store.Apply(_snapshot);
        _telemetry = new SidecarTelemetry(store, NullLoggerFactory.Instance);
        _labels = new SnapshotLabels(_snapshot);
        _cluster = _snapshot.Services.VirtualHosts.Single().DefaultCluster;
        _context = new DefaultHttpContext();
        _context.Request.Method = HttpMethods.Get;
        _context.Request.Path = "/cart";
        _context.Request.Headers.Host = "billing";
        _context.Request.Protocol = "HTTP/1.1";
        _context.Response.StatusCode = 200;
        _context.Response.ContentLength = 512;
        StartFinish(); // the series exists: what is measured is the steady state
    }

    [GlobalCleanup]
    public void Cleanup() => _telemetry.Dispose();

    /// <summary>Everything telemetry does for one outbound request with access log and tracing off.</summary>
    [Benchmark]
    public void StartFinish()
    {
        var record = _telemetry.Start(_context, _labels, outbound: true);
        record.Cluster = _cluster;
        _telemetry.Finish(_context, _labels, ref record, outbound: true);
    }

    /// <summary>Only the Istio metrics: label lookup by reference, one series, four instruments.</summary>
    [Benchmark]
    public void RecordRequestWithSnapshotLabels() =>
        _telemetry.Istio.RecordRequest(
            new RequestLabels
            {
                Workload = _labels.Outbound(_cluster, null, null),
                RequestProtocol = "http",
                ResponseCode = 200,
                ResponseFlags = "-",
                ConnectionSecurityPolicy = PeerTelemetry.SourceSecurityPolicy,
            },
            3.5, 0, 512);
}
