using System.Net;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>
/// The balancers of Resilience/README.md ("Load balancing"): the pickers fed endpoint states, and the
/// same behaviour end to end through a sidecar to real Kestrel backends.
/// </summary>
public sealed class LoadBalancingTests
{
    /// <summary>The pickers' clock reading: fixed, so that no latency decays between the samples and the picks.</summary>
    private const long Now = 1_000_000;

    private static UpstreamEndpoint[] Endpoints(params int[] weights) =>
        [.. weights.Select((w, i) => new UpstreamEndpoint("127.0.0.1", 10_000 + i, w, null))];

    /// <summary>The balancer <paramref name="simple"/>, and no retries: every request reaches one endpoint only.</summary>
    private static string Unretried(string simple) => Chaos.Route("{ attempts: 0 }") + $$"""

        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: DestinationPolicy
        metadata: { name: svc, namespace: test }
        spec:
          host: svc
          loadBalancer: { simple: {{simple}} }
        """;

    private static Dictionary<UpstreamEndpoint, int> Picks(IEndpointPicker picker, int n)
    {
        var counts = new Dictionary<UpstreamEndpoint, int>();
        for (var i = 0; i < n; i++)
        {
            var e = picker.Pick(Now)!;
            counts[e] = counts.GetValueOrDefault(e) + 1;
        }

        return counts;
    }

    [Fact]
    public void Least_request_never_picks_the_endpoint_with_more_requests_in_flight_while_another_has_fewer()
    {
        var endpoints = Endpoints(1, 1, 1, 1);
        for (var i = 0; i < 10; i++)
        {
            endpoints[0].Health.Begin();
        }

        endpoints[1].Health.Begin();
        var counts = Picks(EndpointPickers.Create(LoadBalancerKind.LeastRequest, endpoints), 10_000);

        // Two distinct draws, the one with fewer in flight wins: the busiest never wins a pair.
        Assert.Equal(0, counts.GetValueOrDefault(endpoints[0]));
        // The one with 1 in flight wins only against the busy one: 1/3 of its pairs, so about 1/6 of picks.
        Assert.InRange(counts.GetValueOrDefault(endpoints[1]), 1_000, 2_500);
    }

    [Fact]
    public void Peak_ewma_avoids_the_slow_endpoint_and_weighs_latency_by_requests_in_flight()
    {
        var endpoints = Endpoints(1, 1, 1);
        var now = Now;
        endpoints[0].Health.ObserveLatency(80, now); // a slower sample is believed at once
        var picker = EndpointPickers.Create(LoadBalancerKind.PeakEwma, endpoints);

        Assert.Equal(0, Picks(picker, 10_000).GetValueOrDefault(endpoints[0]));

        // Cost is latency x (in flight + 1): 30 ms x 3 = 90 > 80 x 1, so the slow idle one now beats the busy fast one.
        endpoints[1].Health.Begin();
        endpoints[1].Health.Begin();
        var counts = Picks(picker, 10_000);
        Assert.Equal(0, counts.GetValueOrDefault(endpoints[1]));
        Assert.InRange(counts.GetValueOrDefault(endpoints[0]), 2_000, 5_000);
    }

    [Theory]
    [InlineData(LoadBalancerKind.RoundRobin)]
    [InlineData(LoadBalancerKind.Random)]
    [InlineData(LoadBalancerKind.LeastRequest)]
    public void Balancers_follow_endpoint_weights_among_equally_loaded_endpoints(LoadBalancerKind kind)
    {
        // For LEAST_REQUEST the weights act through its two draws, which decide between endpoints with
        // as many requests in flight (here none). PEAK_EWMA is left out: two unmeasured endpoints' costs
        // differ by their creation time's decay, so the older one wins every pair (see README).
        var endpoints = Endpoints(3, 1);
        var counts = Picks(EndpointPickers.Create(kind, endpoints), 20_000);

        var heavy = counts.GetValueOrDefault(endpoints[0]) / 20_000.0;
        if (kind == LoadBalancerKind.RoundRobin)
        {
            Assert.Equal(15_000, counts.GetValueOrDefault(endpoints[0])); // a rotation: exact
        }

        Assert.InRange(heavy, 0.72, 0.78);
    }

    [Theory]
    [InlineData(LoadBalancerKind.LeastRequest)]
    [InlineData(LoadBalancerKind.PeakEwma)]
    public void P2c_compares_requests_in_flight_per_unit_of_weight(LoadBalancerKind kind)
    {
        var endpoints = Endpoints(3, 1);
        var now = Now;
        foreach (var e in endpoints)
        {
            e.Health.ObserveLatency(50, now); // measured alike, so that only the load tells them apart
        }

        var picker = EndpointPickers.Create(kind, endpoints);
        void Hold(int heavy, int light)
        {
            for (var i = 0; i < heavy; i++)
            {
                endpoints[0].Health.Begin();
            }

            for (var i = 0; i < light; i++)
            {
                endpoints[1].Health.Begin();
            }
        }

        // 20 and 10 in flight: fewer per unit of weight on the heavy one (6.7 against 10), so it wins every
        // pair. Unweighted it would win none (20 > 10).
        Hold(20, 10);
        Assert.Equal(10_000, Picks(picker, 10_000).GetValueOrDefault(endpoints[0]));

        // 30 and 10: as loaded as each other for their weights; the draws decide, 3:1.
        Hold(10, 0);
        var heavy = Picks(picker, 20_000).GetValueOrDefault(endpoints[0]) / 20_000.0;
        Assert.InRange(heavy, 0.72, 0.78);

        // 40 and 10: the heavy one is over its share (13.3 per unit against 10) and wins nothing.
        Hold(10, 0);
        Assert.Equal(0, Picks(picker, 10_000).GetValueOrDefault(endpoints[0]));
    }

    /// <summary>
    /// Steady load without sockets: every pick starts a request that ends <paramref name="inFlight"/> picks
    /// later (so that many are always in flight, each lasting as long), like backends of equal speed.
    /// </summary>
    private static double[] SteadyShares(LoadBalancerKind kind, int[] weights, int inFlight, int picks)
    {
        var endpoints = Endpoints(weights);
        var now = Now;
        foreach (var e in endpoints)
        {
            e.Health.ObserveLatency(50, now);
        }

        var picker = EndpointPickers.Create(kind, endpoints);
        var running = new Queue<UpstreamEndpoint>();
        var counts = new int[weights.Length];
        for (var i = 0; i < picks + inFlight; i++)
        {
            if (running.Count == inFlight)
            {
                running.Dequeue().Health.End();
            }

            var picked = picker.Pick(Now)!;
            picked.Health.Begin();
            running.Enqueue(picked);
            if (i >= inFlight)
            {
                counts[Array.IndexOf(endpoints, picked)]++;
            }
        }

        return [.. counts.Select(c => (double)c / picks)];
    }

    [Theory]
    [InlineData(LoadBalancerKind.LeastRequest)]
    [InlineData(LoadBalancerKind.PeakEwma)]
    public void Under_steady_load_p2c_shares_follow_the_weights(LoadBalancerKind kind)
    {
        // 3:1 with 40 in flight: 75/25 (unweighted comparison evens out requests in flight: 50/50).
        var two = SteadyShares(kind, [3, 1], inFlight: 40, picks: 20_000);
        Assert.InRange(two[0], 0.72, 0.78);

        // 3:1:1:1 with 60 in flight: 1/2 and 1/6 each (the draws pick the pairs, the comparison then keeps
        // requests in flight per unit of weight level, so that each endpoint's share follows its weight).
        var four = SteadyShares(kind, [3, 1, 1, 1], inFlight: 60, picks: 20_000);
        Assert.InRange(four[0], 0.46, 0.54);
        Assert.All(four.Skip(1), s => Assert.InRange(s, 0.14, 0.19));

        // Equal weights: equal shares, as before.
        var equal = SteadyShares(kind, [2, 2, 2], inFlight: 30, picks: 9_000);
        Assert.All(equal, s => Assert.InRange(s, 0.31, 0.36));
    }

    [Theory]
    [InlineData("LEAST_REQUEST")]
    [InlineData("PEAK_EWMA")]
    public async Task Under_concurrent_load_p2c_shares_follow_endpoint_weights(string balancer)
    {
        // Both backends answer after the same delay, so that many requests are always in flight at each.
        static Task SlowOk(HttpContext context) => Task.Delay(50).ContinueWith(_ => context.Response.WriteAsync("ok")).Unwrap();
        await using var heavy = await ChaosBackend.StartAsync(SlowOk);
        await using var light = await ChaosBackend.StartAsync(SlowOk);
        await using var chaos = await Chaos.StartWeightedAsync([(heavy.Port, 3), (light.Port, 1)], Unretried(balancer));

        // Warm up: connections open at both, latencies measured.
        await RunAsync(40, 8);
        var before = (Heavy: heavy.Received, Light: light.Received);
        await RunAsync(600, 32);

        var toHeavy = heavy.Received - before.Heavy;
        var toLight = light.Received - before.Light;
        Assert.Equal(600, toHeavy + toLight);
        // A smoke test of the wiring (weights reach the picker through a real sidecar): the exact 75/25 share is
        // proven on a fake clock in Under_steady_load_p2c_shares_follow_the_weights. Over sockets on a loaded
        // machine the measured latencies (PEAK_EWMA) and the requests in flight move the share by several points
        // (0.67 seen at load 24 on 2 cores), so the bound here only separates "weighted" from "evened out" (0.5).
        var share = toHeavy / 600.0;
        Assert.True(share is >= 0.6 and <= 0.9, $"the weight-3 endpoint got {toHeavy} of 600 (in-flight evened out: about 300; weights: 450)");

        async Task RunAsync(int requests, int concurrency)
        {
            var next = -1;
            await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
            {
                while (Interlocked.Increment(ref next) < requests)
                {
                    using var response = await chaos.SendAsync(HttpMethod.Get, "/work");
                    Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                }
            }));
        }
    }

    [Fact]
    public async Task Round_robin_shares_follow_endpoint_weights()
    {
        await using var heavy = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        await using var light = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        await using var chaos = await Chaos.StartWeightedAsync([(heavy.Port, 3), (light.Port, 1)], Unretried("ROUND_ROBIN"));

        for (var i = 0; i < 200; i++)
        {
            using var response = await chaos.SendAsync(HttpMethod.Get, "/work");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // One rotation is heavy, light, heavy, heavy: 200 requests are 50 rotations.
        Assert.Equal(150, heavy.Received);
        Assert.Equal(50, light.Received);
    }
}
