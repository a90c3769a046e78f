using System.Collections.Concurrent;
using System.Net;
using MeshProxy.Sidecar.Resilience;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>Outlier detection as Resilience/README.md describes it: ejection time, the ejection cap, and what counts.</summary>
public sealed class OutlierDetectionTests
{
    private static string Policy(string outlierDetection) => Chaos.Route("{ attempts: 0 }") + $$"""

        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: DestinationPolicy
        metadata: { name: svc, namespace: test }
        spec:
          host: svc
          loadBalancer: { simple: ROUND_ROBIN }
          outlierDetection: {{outlierDetection}}
        """;

    [Fact]
    public void Ejection_time_grows_with_each_ejection_shrinks_with_time_in_service_and_is_bounded()
    {
        var policy = new OutlierPolicy(5, null, null, Interval: TimeSpan.FromSeconds(10), BaseEjectionTime: TimeSpan.FromSeconds(1),
            MaxEjectionTime: TimeSpan.FromSeconds(2.5), MaxEjectionPercent: 100);
        var health = new EndpointHealth();
        var t = 1_000_000L;

        Assert.True(health.Eject(policy, t));
        Assert.Equal(t + 1000, health.EjectedUntilMs);
        Assert.False(health.Eject(policy, t + 500)); // already ejected

        t += 1000; // back, and failing again at once
        Assert.True(health.Eject(policy, t));
        Assert.Equal(t + 2000, health.EjectedUntilMs);

        t += 2000;
        Assert.True(health.Eject(policy, t));
        Assert.Equal(3, health.EjectionMultiplier);
        Assert.Equal(t + 2500, health.EjectedUntilMs); // 3 s, bounded by the max ejection time

        t += 2500 + 20_000; // two intervals in service: the multiplier comes down by two
        Assert.True(health.Eject(policy, t));
        Assert.Equal(2, health.EjectionMultiplier);
        Assert.Equal(t + 2000, health.EjectedUntilMs);
        Assert.Equal(4, health.Ejections);
    }

    [Fact]
    public void Max_ejection_time_defaults_to_300_s_or_the_base_time_if_longer()
    {
        static OutlierPolicy From(TimeSpan baseTime) => OutlierPolicy.From(new Config.Resources.OutlierDetectionSpec(5, null, null, TimeSpan.FromSeconds(10), baseTime, 10));

        Assert.Equal(TimeSpan.FromMinutes(5), From(TimeSpan.FromSeconds(30)).MaxEjectionTime);
        Assert.Equal(TimeSpan.FromMinutes(10), From(TimeSpan.FromMinutes(10)).MaxEjectionTime);
    }

    [Fact]
    public async Task Max_ejection_percent_bounds_how_many_endpoints_are_ejected_at_once()
    {
        var failing = new ChaosBackend[3];
        for (var i = 0; i < 3; i++)
        {
            failing[i] = await ChaosBackend.StartAsync(context =>
            {
                context.Response.StatusCode = 500;
                return Task.CompletedTask;
            });
        }

        try
        {
            await using var good = await ChaosBackend.StartAsync(ChaosBackend.Ok);
            await using var chaos = await Chaos.StartAsync([.. failing.Select(b => b.Port), good.Port],
                Policy("{ consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50 }"));

            for (var i = 0; i < 40; i++)
            {
                using var _ = await chaos.SendAsync(HttpMethod.Get, "/x");
            }

            // 4 endpoints, 50 %: two ejected; the third failing one keeps its traffic.
            var ejected = await chaos.EjectedAsync();
            Assert.Equal(2, ejected.Length);
            Assert.DoesNotContain($"127.0.0.1:{good.Port}", ejected);
            Assert.Equal(2, (await chaos.HealthAsync()).GetProperty("ejectionsTotal").GetInt64());
            var notEjected = failing.Single(b => !ejected.Contains($"127.0.0.1:{b.Port}"));
            Assert.True(notEjected.Received >= 10, $"the failing endpoint left in got {notEjected.Received} requests");
        }
        finally
        {
            foreach (var b in failing)
            {
                await b.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Consecutive_gateway_errors_count_502_503_504_and_a_500_breaks_the_run()
    {
        var statuses = new ConcurrentQueue<int>();
        await using var flaky = await ChaosBackend.StartAsync(context =>
        {
            context.Response.StatusCode = statuses.TryDequeue(out var s) ? s : 200;
            return Task.CompletedTask;
        });
        await using var good = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        await using var chaos = await Chaos.StartAsync([flaky.Port, good.Port],
            Policy("{ consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50 }"));

        async Task ServeAsync(params int[] sequence)
        {
            foreach (var s in sequence)
            {
                statuses.Enqueue(s);
            }

            // Round robin over two: every other request. Bounded, so that an ejection cannot stall it.
            var target = flaky.Received + sequence.Length;
            for (var i = 0; i < 4 * sequence.Length && flaky.Received < target; i++)
            {
                using var _ = await chaos.SendAsync(HttpMethod.Get, "/x");
            }

            Assert.True(flaky.Received == target, $"the endpoint was sent {flaky.Received} of {target} requests: ejected early");
        }

        // 500s are not gateway errors, however many.
        await ServeAsync(500, 500, 500, 500, 500, 500);
        Assert.Empty(await chaos.EjectedAsync());

        // Gateway errors broken up by a 500 never make three in a row.
        await ServeAsync(502, 503, 500, 504, 502, 500, 503, 504, 500);
        Assert.Empty(await chaos.EjectedAsync());

        await ServeAsync(502, 503, 504);
        Assert.Equal([$"127.0.0.1:{flaky.Port}"], await chaos.EjectedAsync());
    }

    [Fact]
    public async Task Consecutive_local_origin_failures_count_resets()
    {
        await using var resetting = await ChaosBackend.StartAsync(context =>
        {
            context.Abort(); // the request arrived; the connection dies before any answer
            return Task.CompletedTask;
        });
        await using var good = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        await using var chaos = await Chaos.StartAsync([resetting.Port, good.Port],
            Policy("{ consecutive5xxErrors: 0, consecutiveLocalOriginFailures: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50 }"));

        async Task FailAsync(int times)
        {
            var target = resetting.Received + times;
            for (var i = 0; i < 4 * times && resetting.Received < target; i++)
            {
                using var response = await chaos.SendAsync(HttpMethod.Get, "/x");
                Assert.NotEqual(HttpStatusCode.InternalServerError, response.StatusCode);
            }
        }

        await FailAsync(2);
        Assert.Equal(2, resetting.Received);
        Assert.Empty(await chaos.EjectedAsync());
        await FailAsync(1);
        Assert.Equal([$"127.0.0.1:{resetting.Port}"], await chaos.EjectedAsync());

        // Ejected: the rest go to the other endpoint.
        var before = resetting.Received;
        for (var i = 0; i < 10; i++)
        {
            using var response = await chaos.SendAsync(HttpMethod.Get, "/x");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(before, resetting.Received);
    }
}
