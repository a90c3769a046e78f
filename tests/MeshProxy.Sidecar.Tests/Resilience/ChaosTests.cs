using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>Resilience under real failures on real sockets: each test proves one promise of Resilience/README.md.</summary>
public sealed class ChaosTests
{
    private static Func<HttpContext, Task> FailingShare(double share) => context =>
    {
        if (Random.Shared.NextDouble() < share)
        {
            context.Response.StatusCode = 503;
            return Task.CompletedTask;
        }

        return ChaosBackend.Ok(context);
    };

    [Fact]
    public async Task Twenty_percent_failures_are_hidden_by_three_retries_and_visible_without()
    {
        await using var a = await ChaosBackend.StartAsync(FailingShare(0.2));
        await using var b = await ChaosBackend.StartAsync(FailingShare(0.2));

        // 20 % failures need about 25 % retries (0.2 + 0.2^2 + ...), more than the default budget's 20 %:
        // this test measures retries, so the budget is widened; the budget has its own test below.
        double withRetries;
        await using (var chaos = await Chaos.StartAsync([a.Port, b.Port], Chaos.Route("{ attempts: 3, retryOn: 5xx }") + """

            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: DestinationPolicy
            metadata: { name: svc, namespace: test }
            spec:
              host: svc
              retryBudget: { percent: 50, minRetriesPerSecond: 10 }
            """))
        {
            withRetries = await chaos.SuccessRateAsync(400, 8, HttpMethod.Get);
        }

        double without;
        await using (var chaos = await Chaos.StartAsync([a.Port, b.Port], Chaos.Route("{ attempts: 0 }")))
        {
            without = await chaos.SuccessRateAsync(400, 8, HttpMethod.Get);
        }

        Assert.True(withRetries >= 0.99, $"with retries: {withRetries:P1}");
        Assert.InRange(without, 0.70, 0.90);
    }

    [Fact]
    public async Task Retry_budget_caps_retries_during_a_total_outage()
    {
        await using var down = await ChaosBackend.StartAsync(context =>
        {
            context.Response.StatusCode = 503;
            return Task.CompletedTask;
        });
        await using var chaos = await Chaos.StartAsync([down.Port], Chaos.Route("{ attempts: 3, retryOn: 5xx }"));

        const int Requests = 200;
        var clock = Stopwatch.StartNew();
        var exhausted = 0;
        for (var i = 0; i < Requests; i++)
        {
            using var response = await chaos.SendAsync(HttpMethod.Get, "/down");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            if (response.Headers.TryGetValues("x-meshproxy-response-flags", out var flags) && flags.Single() == "UO")
            {
                exhausted++;
            }
        }

        // Budget: 20 % of requests, a floor of 10 per second, and one second's floor to start with.
        var bound = Requests * 1.2 + 10 + 10 * Math.Ceiling(clock.Elapsed.TotalSeconds);
        Assert.True(down.Received <= bound, $"{down.Received} upstream attempts for {Requests} requests in {clock.Elapsed.TotalSeconds:F1}s; bound {bound}");
        Assert.True(down.Received >= Requests * 1.1, $"retries did happen: {down.Received}");
        // A spent budget is a circuit breaker's refusal, flagged UO as Envoy flags it (not URX: these
        // requests had retries of their own left).
        Assert.True(exhausted > Requests / 2, $"{exhausted} answers flagged UO");
        Assert.Contains("\"retriesExhausted\"", await chaos.ConfigDumpAsync());
    }

    [Fact]
    public async Task A_post_that_may_have_arrived_is_never_sent_twice()
    {
        await using var resetting = await ChaosBackend.StartAsync(async context =>
        {
            await context.Request.Body.CopyToAsync(Stream.Null);
            context.Abort(); // received, then the connection dies before any answer
        });
        await using var chaos = await Chaos.StartAsync([resetting.Port], Chaos.Route("{ attempts: 3, retryOn: \"5xx,reset,gateway-error\" }"));

        for (var i = 0; i < 10; i++)
        {
            using var response = await chaos.SendAsync(HttpMethod.Post, "/pay", new StringContent("charge 10"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("UC", response.Headers.GetValues("x-meshproxy-response-flags").Single());
        }

        Assert.Equal(10, resetting.Received);

        // The same failure on a GET is retried: it is safe to repeat.
        using (var get = await chaos.SendAsync(HttpMethod.Get, "/balance"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, get.StatusCode);
        }

        Assert.Equal(14, resetting.Received);
    }

    [Fact]
    public async Task A_post_that_never_left_is_retried_on_another_endpoint_with_its_body()
    {
        var bodies = new List<string>();
        await using var live = await ChaosBackend.StartAsync(async context =>
        {
            var body = await new StreamReader(context.Request.Body).ReadToEndAsync();
            lock (bodies)
            {
                bodies.Add(body);
            }

            await context.Response.WriteAsync("ok");
        });
        var dead = ClosedPort.Next();
        await using var chaos = await Chaos.StartAsync([dead, live.Port]); // no route: Istio's default retries

        var payload = new string('x', 40_000);
        for (var i = 0; i < 20; i++)
        {
            using var response = await chaos.SendAsync(HttpMethod.Post, "/order", new StringContent(payload + i));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(20, live.Received);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => payload + i).Order(), bodies.Order());
    }

    [Fact]
    public async Task A_body_over_64_KiB_is_not_retried()
    {
        await using var flaky = await ChaosBackend.StartAsync(async context =>
        {
            await context.Request.Body.CopyToAsync(Stream.Null);
            context.Response.StatusCode = 503;
        });
        await using var chaos = await Chaos.StartAsync([flaky.Port], Chaos.Route("{ attempts: 3, retryOn: 5xx }"));

        using (var small = await chaos.SendAsync(HttpMethod.Put, "/doc", new ByteArrayContent(new byte[1000])))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, small.StatusCode);
        }

        Assert.Equal(4, flaky.Received);
        using (var large = await chaos.SendAsync(HttpMethod.Put, "/doc", new ByteArrayContent(new byte[100_000])))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, large.StatusCode);
        }

        Assert.Equal(5, flaky.Received);
    }

    [Fact]
    public async Task The_keep_alive_race_is_absorbed_for_idempotent_requests()
    {
        await using var race = new RaceBackend();
        await using var chaos = await Chaos.StartAsync([race.Port], Chaos.Route("{ attempts: 2, retryOn: \"reset,connect-failure\" }"));

        var rate = await chaos.SuccessRateAsync(100, 1, HttpMethod.Get);

        Assert.True(race.ClosedOnReuse > 0, "the race happened");
        Assert.Equal(1.0, rate);
    }

    [Fact]
    public async Task An_ejected_endpoint_takes_no_traffic_and_comes_back_on_its_own()
    {
        var broken = 1;
        await using var bad = await ChaosBackend.StartAsync(context =>
        {
            context.Response.StatusCode = Volatile.Read(ref broken) == 1 ? 500 : 200;
            return Task.CompletedTask;
        });
        await using var good = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        await using var chaos = await Chaos.StartAsync([bad.Port, good.Port], Chaos.Route("{ attempts: 0 }") + """

            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: DestinationPolicy
            metadata: { name: svc, namespace: test }
            spec:
              host: svc
              loadBalancer: { simple: ROUND_ROBIN }
              outlierDetection: { consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 1s, maxEjectionPercent: 50 }
            """);

        for (var i = 0; i < 10; i++)
        {
            using var _ = await chaos.SendAsync(HttpMethod.Get, "/x");
        }

        var badBefore = bad.Received;
        Assert.Equal(3, badBefore);
        var dump = await chaos.ConfigDumpAsync();
        Assert.Contains("\"ejected\": true", dump);
        Assert.Contains("\"ejectionsTotal\": 1", dump);

        for (var i = 0; i < 10; i++)
        {
            using var response = await chaos.SendAsync(HttpMethod.Get, "/x");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(badBefore, bad.Received);

        Volatile.Write(ref broken, 0);
        await Task.Delay(1200, TestContext.Current.CancellationToken);
        for (var i = 0; i < 10; i++)
        {
            using var response = await chaos.SendAsync(HttpMethod.Get, "/x");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.True(bad.Received >= badBefore + 4, $"the endpoint came back: {bad.Received - badBefore} requests after ejection");
        Assert.DoesNotContain("\"ejected\": true", await chaos.ConfigDumpAsync());
    }

    [Fact]
    public async Task Per_try_timeout_retries_then_answers_504_UT()
    {
        await using var hanging = await ChaosBackend.StartAsync(async context =>
        {
            try
            {
                await Task.Delay(3000, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
            }
        });
        await using var chaos = await Chaos.StartAsync([hanging.Port], Chaos.Route("{ attempts: 2, perTryTimeout: 200ms, retryOn: reset }"));

        var clock = Stopwatch.StartNew();
        using var response = await chaos.SendAsync(HttpMethod.Get, "/slow");

        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Contains("UT", response.Headers.GetValues("x-meshproxy-response-flags").Single().Split(','));
        Assert.Equal(3, hanging.Received);
        Assert.InRange(clock.ElapsedMilliseconds, 550, 2000);
    }

    [Fact]
    public async Task Route_timeout_bounds_all_attempts_and_answers_504_UT()
    {
        await using var hanging = await ChaosBackend.StartAsync(async context =>
        {
            try
            {
                await Task.Delay(3000, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
            }
        });
        await using var chaos = await Chaos.StartAsync([hanging.Port], Chaos.Route("{ attempts: 5, perTryTimeout: 200ms, retryOn: reset }", timeout: "500ms"));

        var clock = Stopwatch.StartNew();
        using var response = await chaos.SendAsync(HttpMethod.Get, "/slow");

        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Contains("UT", response.Headers.GetValues("x-meshproxy-response-flags").Single().Split(','));
        Assert.InRange(clock.ElapsedMilliseconds, 450, 1500);
        Assert.InRange(hanging.Received, 2, 3);
    }

    [Fact]
    public async Task Circuit_breaker_overflow_answers_503_UO_at_once()
    {
        var release = new TaskCompletionSource();
        await using var holding = await ChaosBackend.StartAsync(async context =>
        {
            await release.Task.WaitAsync(TimeSpan.FromSeconds(5));
            await context.Response.WriteAsync("ok");
        });
        await using var chaos = await Chaos.StartAsync([holding.Port], """
            apiVersion: meshproxy.io/v1alpha1
            kind: DestinationPolicy
            metadata: { name: svc, namespace: test }
            spec:
              host: svc
              connectionPool: { http: { http2MaxRequests: 2 } }
            """);

        var held = new[] { chaos.SendAsync(HttpMethod.Get, "/1"), chaos.SendAsync(HttpMethod.Get, "/2") };
        while (holding.Received < 2)
        {
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        var clock = Stopwatch.StartNew();
        using (var overflow = await chaos.SendAsync(HttpMethod.Get, "/3"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, overflow.StatusCode);
            Assert.Equal("UO", overflow.Headers.GetValues("x-meshproxy-response-flags").Single());
        }

        Assert.True(clock.ElapsedMilliseconds < 300, $"{clock.ElapsedMilliseconds} ms");
        release.SetResult();
        foreach (var r in await Task.WhenAll(held))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            r.Dispose();
        }

        Assert.Equal(2, holding.Received);
    }

    [Fact]
    public async Task Concurrent_retries_over_max_retries_return_the_original_failure_at_once_flagged_UO()
    {
        // "/held": a 503, then the retry is held until released. "/other": always 503.
        var release = new TaskCompletionSource();
        var calls = new ConcurrentDictionary<string, int>();
        await using var backend = await ChaosBackend.StartAsync(async context =>
        {
            var n = calls.AddOrUpdate(context.Request.Path.Value!, 1, (_, c) => c + 1);
            if (context.Request.Path == "/held" && n == 2)
            {
                await release.Task.WaitAsync(TimeSpan.FromSeconds(30));
                await context.Response.WriteAsync("ok");
                return;
            }

            context.Response.StatusCode = 503;
            await context.Response.WriteAsync("upstream says no");
        });
        await using var chaos = await Chaos.StartAsync([backend.Port], Chaos.Route("{ attempts: 2, retryOn: 5xx }") + """

            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: DestinationPolicy
            metadata: { name: svc, namespace: test }
            spec:
              host: svc
              connectionPool: { http: { maxRetries: 1 } }
            """);

        var held = chaos.SendAsync(HttpMethod.Get, "/held");
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
        {
            while (calls.GetValueOrDefault("/held") < 2)
            {
                await Task.Delay(10, timeout.Token);
            }
        }

        // The one retry slot is taken: the next failure is not retried, and the caller gets the upstream's
        // own answer, flagged UO as Envoy flags a retry overflow (URX is for a request's retries used up).
        using (var overflow = await chaos.SendAsync(HttpMethod.Get, "/other"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, overflow.StatusCode);
            Assert.Equal("upstream says no", await overflow.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
            Assert.Equal("UO", overflow.Headers.GetValues("x-meshproxy-response-flags").Single());
        }

        Assert.Equal(1, calls["/other"]);
        var health = await chaos.HealthAsync();
        Assert.Equal(1, health.GetProperty("retryOverflow").GetInt64());
        Assert.Equal(1, health.GetProperty("activeRetries").GetInt32());

        release.SetResult();
        using (var response = await held)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // The slot is free again: the same failure is retried twice, then returned with URX.
        using (var exhausted = await chaos.SendAsync(HttpMethod.Get, "/other"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, exhausted.StatusCode);
            Assert.Equal("URX", exhausted.Headers.GetValues("x-meshproxy-response-flags").Single());
        }

        Assert.Equal(4, calls["/other"]);
        Assert.Equal(0, (await chaos.HealthAsync()).GetProperty("activeRetries").GetInt32());
    }

    [Fact]
    public async Task Grpc_timeout_is_rewritten_with_the_time_left_on_each_attempt()
    {
        var seen = new List<string>();
        await using var backend = await ChaosBackend.StartAsync(async context =>
        {
            lock (seen)
            {
                seen.Add(context.Request.Headers["grpc-timeout"].ToString());
            }

            await Task.Delay(150);
            context.Response.StatusCode = 503;
        });
        await using var chaos = await Chaos.StartAsync([backend.Port], Chaos.Route("{ attempts: 2, retryOn: 5xx }"));

        using var response = await chaos.SendAsync(HttpMethod.Get, "/grpc.Svc/M", new ByteArrayContent([0, 0, 0, 0, 0]), r =>
        {
            r.Content!.Headers.ContentType = new("application/grpc");
            r.Headers.TryAddWithoutValidation("grpc-timeout", "2S");
        });

        Assert.Equal(3, seen.Count);
        var ms = seen.Select(s => int.Parse(s.TrimEnd('m'))).ToList();
        Assert.All(seen, s => Assert.EndsWith("m", s));
        Assert.InRange(ms[0], 1800, 2000);
        Assert.True(ms[1] <= ms[0] - 150 && ms[2] <= ms[1] - 150, string.Join(", ", seen));
    }

    [Fact]
    public async Task A_grpc_unavailable_answer_is_retried_only_for_a_call_that_may_be_replayed()
    {
        // Trailers-only gRPC answers: UNAVAILABLE (14) to the first call on each path, OK after.
        var calls = new Dictionary<string, int>();
        await using var backend = await ChaosBackend.StartAsync(async context =>
        {
            await context.Request.Body.CopyToAsync(Stream.Null);
            int n;
            lock (calls)
            {
                n = calls[context.Request.Path.Value!] = calls.GetValueOrDefault(context.Request.Path.Value!) + 1;
            }

            context.Response.ContentType = "application/grpc";
            context.Response.Headers["grpc-status"] = n == 1 ? "14" : "0";
        });
        await using var chaos = await Chaos.StartAsync([backend.Port], Chaos.Route("{ attempts: 2, retryOn: unavailable }"));

        static ByteArrayContent Call()
        {
            var content = new ByteArrayContent([0, 0, 0, 0, 0]);
            content.Headers.ContentType = new("application/grpc");
            return content;
        }

        // A gRPC call is a POST: the UNAVAILABLE answer proves it arrived, so it is not replayed...
        using (var response = await chaos.SendAsync(HttpMethod.Post, "/svc.Pay/Charge", Call()))
        {
            Assert.Equal("14", response.Headers.GetValues("grpc-status").Single());
        }

        // ...unless the caller vouches for replay with Idempotency-Key.
        using (var response = await chaos.SendAsync(HttpMethod.Post, "/svc.Pay/Quote", Call(),
                   r => r.Headers.Add("Idempotency-Key", "q-1")))
        {
            Assert.Equal("0", response.Headers.GetValues("grpc-status").Single());
        }

        Assert.Equal(1, calls["/svc.Pay/Charge"]);
        Assert.Equal(2, calls["/svc.Pay/Quote"]);
    }

    [Fact]
    public async Task An_endpoint_that_dies_is_hidden_by_retries_and_serves_again_when_it_comes_back()
    {
        await using var steady = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        var dying = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        var port = dying.Port;
        await using var chaos = await Chaos.StartAsync([steady.Port, port], """
            apiVersion: meshproxy.io/v1alpha1
            kind: DestinationPolicy
            metadata: { name: svc, namespace: test }
            spec:
              host: svc
              loadBalancer: { simple: ROUND_ROBIN }
              outlierDetection: { splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2, interval: 1s, baseEjectionTime: 1s, maxEjectionPercent: 50 }
            """);

        Assert.Equal(1.0, await chaos.SuccessRateAsync(20, 2, HttpMethod.Get));
        Assert.True(dying.Received > 0);

        // Dead: connections are refused; the default retry policy (connect-failure) sends each failed
        // attempt to the other endpoint, so callers see no failure, and the dead one is ejected.
        await dying.DisposeAsync();
        Assert.Equal(1.0, await chaos.SuccessRateAsync(40, 2, HttpMethod.Post));
        Assert.Contains("\"ejected\": true", await chaos.ConfigDumpAsync());

        // Back on the same port: once its ejection ends it takes its share again.
        await using var back = await ChaosBackend.StartAsync(ChaosBackend.Ok, port);
        var clock = Stopwatch.StartNew();
        while (back.Received == 0 && clock.Elapsed < TimeSpan.FromSeconds(8))
        {
            using var response = await chaos.SendAsync(HttpMethod.Get, "/x");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }

        var before = back.Received;
        Assert.True(before > 0, "the endpoint came back within its ejection time");
        Assert.Equal(1.0, await chaos.SuccessRateAsync(20, 1, HttpMethod.Get));
        Assert.InRange(back.Received - before, 8, 12);
    }

    [Fact]
    public async Task A_caller_that_goes_away_is_logged_DC_and_its_upstream_request_is_cancelled()
    {
        var upstreamCancelled = new TaskCompletionSource();
        await using var hanging = await ChaosBackend.StartAsync(async context =>
        {
            try
            {
                await Task.Delay(5000, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                upstreamCancelled.TrySetResult();
            }
        });
        var log = Path.Combine(Path.GetTempPath(), "meshproxy-chaos-" + Guid.NewGuid().ToString("N") + ".log");
        await using var chaos = await Chaos.StartAsync([hanging.Port],
            Chaos.Route("{ attempts: 2, retryOn: \"5xx,reset\" }") + "\n---\n" + Telemetry.TelemetryMesh.MeshConfig(log));

        var id = "dc-" + Guid.NewGuid().ToString("N");
        using (var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }))
        using (var request = new HttpRequestMessage(HttpMethod.Get, new Uri(chaos.Sidecar.OutboundUri, "/slow")))
        using (var leaving = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken))
        {
            request.Headers.Host = "svc";
            request.Headers.Add("x-request-id", id);
            var sending = client.SendAsync(request, leaving.Token);
            while (hanging.Received == 0)
            {
                await Task.Delay(10, TestContext.Current.CancellationToken);
            }

            // The request is at the upstream, waiting for its answer: the caller leaves.
            await leaving.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sending);
        }

        await upstreamCancelled.Task.WaitAsync(TimeSpan.FromSeconds(3), TestContext.Current.CancellationToken);

        var clock = Stopwatch.StartNew();
        string? line = null;
        while (line is null && clock.Elapsed < TimeSpan.FromSeconds(8))
        {
            line = File.Exists(log) ? File.ReadLines(log).FirstOrDefault(l => l.Contains(id, StringComparison.Ordinal)) : null;
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }

        Assert.True(line is not null, File.Exists(log) ? "no line for the request in: " + File.ReadAllText(log) : "no access log file");
        Assert.Contains("\"response_flags\":\"DC\"", line.Replace(" ", "", StringComparison.Ordinal));
        Assert.Equal(1, hanging.Received); // the caller's departure is not a failure to retry
        File.Delete(log);
    }
}
