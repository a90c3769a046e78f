using System.Buffers;
using System.Net;
using System.Text;
using BenchmarkDotNet.Attributes;
using MeshProxy.Config.Parsing;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Listeners;
using MeshProxy.Sidecar.Routing;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Benchmarks.Routing;

/// <summary>
/// The outbound pipeline's per-request decisions before forwarding: find the service from the
/// authority (or the captured address), match the route rules, pick an endpoint; and the per-connection
/// h2c check. Each should cost nanoseconds and allocate nothing.
/// </summary>
[MemoryDiagnoser]
public class RoutingBenchmarks
{
    private SidecarSnapshot _snapshot = null!;
    private VirtualHost _routed = null!;
    private HttpRequest _request = null!;
    private IPEndPoint _captured = null!;
    private ReadOnlySequence<byte> _http1Preface;
    private string _authority = null!;

    [Params(10, 1000)]
    public int Services { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var yaml = new StringBuilder("""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: store, namespace: shop }
            spec:
              app: { port: 8080 }

            """);
        for (var i = 0; i < Services; i++)
        {
            yaml.Append($"""
                ---
                apiVersion: meshproxy.io/v1alpha1
                kind: Service
                metadata: {"{"} name: svc-{i}, namespace: shop {"}"}
                spec:
                  addresses: [10.96.{i / 250}.{i % 250}]
                  ports: [{"{"} port: 80, targetPort: 8080 {"}"}]
                  endpoints: [{"{"} address: 10.1.{i / 250}.{i % 250} {"}"}, {"{"} address: 10.2.{i / 250}.{i % 250} {"}"}]

                """);
        }

        yaml.Append("""
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: HttpRoute
            metadata: { name: routed, namespace: shop }
            spec:
              hosts: [svc-0]
              http:
                - match: [{ headers: { x-canary: { exact: "yes" } } }]
                  route: [{ destination: { host: svc-1 } }]
                - match: [{ uri: { prefix: /v2/ }, method: { exact: POST } }]
                  route: [{ destination: { host: svc-1 } }]
                - route: [{ destination: { host: svc-0 }, weight: 90 }, { destination: { host: svc-1 }, weight: 10 }]
            """);
        _snapshot = SnapshotBuilder.Build(ResourceParser.ParseText(yaml.ToString(), "bench.yaml"), "v", "bench.yaml", DateTimeOffset.UnixEpoch);
        _snapshot.Services.TryResolve("svc-0", 80, out var routed);
        _routed = routed!;
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = "/v1/charges/42";
        _request = context.Request;
        _authority = $"svc-{Services / 2}.shop.svc.cluster.local:80";
        _captured = new IPEndPoint(IPAddress.Parse("10.96.0.7"), 80);
        _http1Preface = new ReadOnlySequence<byte>("GET /v1/charges HTTP/1.1\r\nHost: billing\r\n"u8.ToArray());
    }

    [Benchmark]
    public object? ResolveByAuthority()
    {
        _snapshot.Services.TryResolve(_authority, 80, out var vhost);
        return vhost;
    }

    [Benchmark]
    public object? ResolveByOriginalDestination()
    {
        _snapshot.Services.TryResolve(_captured, out var vhost);
        return vhost;
    }

    [Benchmark]
    public object? MatchRouteAndPick() => _routed.Match(_request)?.PickCluster();

    [Benchmark]
    public object? PickEndpoint() => _routed.DefaultCluster.Picker.Pick(0);

    [Benchmark]
    public bool? ClassifyHttp1Preface() => CleartextProtocolDetection.Classify(_http1Preface);
}
