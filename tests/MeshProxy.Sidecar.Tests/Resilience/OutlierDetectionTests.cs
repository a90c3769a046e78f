using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Tests.Infrastructure;
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

        // 500s are not gateway errors, however many.
        await ServeAsync(chaos, flaky, statuses, 500, 500, 500, 500, 500, 500);
        Assert.Empty(await chaos.EjectedAsync());

        // Gateway errors broken up by a 500 never make three in a row.
        await ServeAsync(chaos, flaky, statuses, 502, 503, 500, 504, 502, 500, 503, 504, 500);
        Assert.Empty(await chaos.EjectedAsync());

        await ServeAsync(chaos, flaky, statuses, 502, 503, 504);
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
            Policy("{ consecutive5xxErrors: 0, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50 }"));

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

    private static OutlierPolicy Thresholds(int? fiveXx, int? gateway, int? local, bool split) =>
        new(fiveXx, gateway, local, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), OutlierPolicy.DefaultMaxEjectionTime, 100, split);

    private static int FirstEjectingAt(EndpointHealth health, OutlierPolicy policy, params AttemptResult[] results)
    {
        for (var i = 0; i < results.Length; i++)
        {
            if (health.Record(results[i], policy))
            {
                return i + 1;
            }
        }

        return 0;
    }

    [Fact]
    public void Unsplit_local_origin_failures_count_as_gateway_errors_and_the_local_origin_threshold_is_not_used()
    {
        const AttemptResult L = AttemptResult.LocalOriginFailure;

        // As Envoy maps them, 503/504: toward consecutive 5xx...
        Assert.Equal(3, FirstEjectingAt(new EndpointHealth(), Thresholds(3, null, null, split: false), L, L, L, L));
        // ...and toward consecutive gateway errors, in one run with real 502/503/504s.
        Assert.Equal(3, FirstEjectingAt(new EndpointHealth(), Thresholds(null, 3, null, split: false), L, AttemptResult.GatewayError, L));
        // A 500 breaks the gateway run as it would between two real 503s.
        Assert.Equal(0, FirstEjectingAt(new EndpointHealth(), Thresholds(null, 3, null, split: false), L, L, AttemptResult.ServerError, L, L));

        // From the spec: unsplit, consecutiveLocalOriginFailures is dropped, so only the 5xx threshold (5) applies.
        var policy = OutlierPolicy.From(new Config.Resources.OutlierDetectionSpec(5, null, 2, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), 10));
        Assert.Null(policy.ConsecutiveLocalOriginFailures);
        Assert.Equal(5, FirstEjectingAt(new EndpointHealth(), policy, L, L, L, L, L));
    }

    [Fact]
    public void Split_local_origin_failures_count_only_toward_their_own_threshold_and_responses_only_toward_5xx()
    {
        const AttemptResult L = AttemptResult.LocalOriginFailure;
        const AttemptResult G = AttemptResult.GatewayError;

        // Local-origin failures never reach the 5xx or gateway thresholds.
        Assert.Equal(0, FirstEjectingAt(new EndpointHealth(), Thresholds(2, 2, null, split: true), L, L, L, L, L, L));
        Assert.Equal(4, FirstEjectingAt(new EndpointHealth(), Thresholds(2, 2, 4, split: true), L, L, L, L));

        // Real 503s are not local-origin failures, and an upstream response (any status) ends a local-origin run.
        Assert.Equal(0, FirstEjectingAt(new EndpointHealth(), Thresholds(null, null, 3, split: true), G, G, G, L, L, G, L, L, AttemptResult.ServerError, L, L));

        // Local-origin failures do not break a run of real 5xx either: they are not responses at all.
        Assert.Equal(4, FirstEjectingAt(new EndpointHealth(), Thresholds(3, null, 5, split: true), G, G, L, G));

        // From the spec: split with consecutiveLocalOriginFailures unset is Envoy's default of 5.
        var policy = OutlierPolicy.From(new Config.Resources.OutlierDetectionSpec(null, null, null, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), 10, SplitExternalLocalOriginErrors: true));
        Assert.Equal(OutlierPolicy.DefaultConsecutiveLocalOriginFailures, policy.ConsecutiveLocalOriginFailures);
        Assert.Equal(5, FirstEjectingAt(new EndpointHealth(), policy, L, L, L, L, L, L));
    }

    /// <summary>
    /// Queues <paramref name="sequence"/> for the scripted endpoint <paramref name="flaky"/> to answer with, then
    /// sends until it has received them all. Round robin over two: every other request. Bounded, so that an
    /// ejection cannot stall it.
    /// </summary>
    private static async Task ServeAsync(Chaos chaos, ChaosBackend flaky, ConcurrentQueue<int> script, params int[] sequence)
    {
        foreach (var s in sequence)
        {
            script.Enqueue(s);
        }

        var target = flaky.Received + sequence.Length;
        for (var i = 0; i < 4 * sequence.Length && flaky.Received < target; i++)
        {
            using var _ = await chaos.SendAsync(HttpMethod.Get, "/x");
        }

        Assert.True(flaky.Received == target, $"the endpoint was sent {flaky.Received} of {target} requests: ejected early");
    }

    /// <summary>An endpoint whose connections are refused (nothing listens) or that resets every request it receives.</summary>
    private static async Task<(int Port, IAsyncDisposable? Backend)> FailingAsync(string how)
    {
        if (how == "refused")
        {
            return (ClosedPort.Next(), null);
        }

        var resetting = await ChaosBackend.StartAsync(context =>
        {
            context.Abort();
            return Task.CompletedTask;
        });
        return (resetting.Port, resetting);
    }

    /// <summary>
    /// Sends (round robin over the failing endpoint and a good one, no retries) until the failing one has
    /// failed <paramref name="target"/> times in all: every answer other than 200 is one of its failures.
    /// </summary>
    private static async Task<int> FailUntilAsync(Chaos chaos, int failed, int target)
    {
        // Bounded, so that an ejection cannot stall it: round robin over two sends it every other request.
        var bound = 4 * (target - failed) + 4;
        for (var i = 0; i < bound && failed < target; i++)
        {
            using var response = await chaos.SendAsync(HttpMethod.Get, "/x");
            if (response.StatusCode != HttpStatusCode.OK)
            {
                failed++;
            }
        }

        Assert.True(failed == target, $"the failing endpoint failed {failed} of {target} times: ejected early");
        return failed;
    }

    [Theory]
    [InlineData("refused", "consecutive5xxErrors: 3")]
    [InlineData("reset", "consecutive5xxErrors: 3")]
    [InlineData("refused", "consecutive5xxErrors: 0, consecutiveGatewayErrors: 3")]
    [InlineData("reset", "consecutive5xxErrors: 0, consecutiveGatewayErrors: 3")]
    public async Task Unsplit_connect_failures_and_resets_eject_by_the_5xx_or_gateway_threshold_alone(string how, string threshold)
    {
        await AssertEjectedAtAsync(how, $"{{ {threshold}, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50 }}", od =>
        {
            Assert.False(od.GetProperty("splitExternalLocalOriginErrors").GetBoolean());
            Assert.Equal(JsonValueKind.Null, od.GetProperty("consecutiveLocalOriginFailures").ValueKind);
        }, ejectedAt: 3);
    }

    [Theory]
    [InlineData("refused")]
    [InlineData("reset")]
    public async Task Split_connect_failures_and_resets_eject_by_consecutive_local_origin_failures_not_by_5xx_or_gateway(string how)
    {
        // Unsplit, the second failure would have ejected it; split, the sixth does.
        const string Thresholds = "{ consecutive5xxErrors: 2, consecutiveGatewayErrors: 2, splitExternalLocalOriginErrors: true, " +
            "consecutiveLocalOriginFailures: 6, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50 }";
        await AssertEjectedAtAsync(how, Thresholds, od =>
        {
            Assert.True(od.GetProperty("splitExternalLocalOriginErrors").GetBoolean());
            Assert.Equal(6, od.GetProperty("consecutiveLocalOriginFailures").GetInt32());
        }, ejectedAt: 6);
    }

    /// <summary>
    /// Round robin over an endpoint failing as <paramref name="how"/> says (<see cref="FailingAsync"/>) and a
    /// good one, under <paramref name="outlierDetection"/>: the thresholds /config_dump shows pass
    /// <paramref name="thresholds"/>, and the failing endpoint is still in after <paramref name="ejectedAt"/> - 1
    /// of its failures and ejected by the next.
    /// </summary>
    private static async Task AssertEjectedAtAsync(string how, string outlierDetection, Action<JsonElement> thresholds, int ejectedAt)
    {
        var (port, backend) = await FailingAsync(how);
        try
        {
            await using var good = await ChaosBackend.StartAsync(ChaosBackend.Ok);
            await using var chaos = await Chaos.StartAsync([port, good.Port], Policy(outlierDetection));

            thresholds((await chaos.HealthAsync()).GetProperty("outlierDetection"));

            var failed = await FailUntilAsync(chaos, 0, ejectedAt - 1);
            Assert.Empty(await chaos.EjectedAsync());
            await FailUntilAsync(chaos, failed, ejectedAt);
            Assert.Equal([$"127.0.0.1:{port}"], await chaos.EjectedAsync());
        }
        finally
        {
            if (backend is not null)
            {
                await backend.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Split_real_503_responses_are_not_local_origin_failures_and_end_a_run_of_them()
    {
        const int Reset = 0;
        var script = new ConcurrentQueue<int>();
        await using var flaky = await ChaosBackend.StartAsync(context =>
        {
            var next = script.TryDequeue(out var s) ? s : 200;
            if (next == Reset)
            {
                context.Abort();
            }
            else
            {
                context.Response.StatusCode = next;
            }

            return Task.CompletedTask;
        });
        await using var good = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        await using var chaos = await Chaos.StartAsync([flaky.Port, good.Port], Policy(
            "{ consecutive5xxErrors: 0, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50 }"));

        // Were 503s local-origin failures, the first three would eject; were they neutral, the run of resets around them would.
        await ServeAsync(chaos, flaky, script, 503, 503, 503, Reset, Reset, 503, Reset, Reset, 503, 503);
        Assert.Empty(await chaos.EjectedAsync());

        await ServeAsync(chaos, flaky, script, Reset, Reset, Reset);
        Assert.Equal([$"127.0.0.1:{flaky.Port}"], await chaos.EjectedAsync());
    }
}
