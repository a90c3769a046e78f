using BenchmarkDotNet.Attributes;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Benchmarks.Resilience;

/// <summary>One pick per operation, per balancer and cluster size; must not allocate.</summary>
[MemoryDiagnoser]
public class PickerBenchmarks
{
    private readonly long _now = Environment.TickCount64;
    private IEndpointPicker _picker = null!;

    [Params(3, 100)]
    public int Endpoints { get; set; }

    [Params(LoadBalancerKind.LeastRequest, LoadBalancerKind.PeakEwma, LoadBalancerKind.RoundRobin)]
    public LoadBalancerKind Kind { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var endpoints = Enumerable.Range(0, Endpoints)
            .Select(i => new UpstreamEndpoint($"10.0.{i / 250}.{i % 250 + 1}", 8080, 1, null))
            .ToList();
        var now = _now;
        for (var i = 0; i < endpoints.Count; i++)
        {
            endpoints[i].Health.ObserveLatency(5 + i % 7, now);
            for (var a = 0; a < i % 4; a++)
            {
                endpoints[i].Health.Begin();
            }
        }

        _picker = EndpointPickers.Create(Kind, endpoints);
    }

    [Benchmark]
    public int Pick() => _picker.Pick(_now)!.Port;
}
