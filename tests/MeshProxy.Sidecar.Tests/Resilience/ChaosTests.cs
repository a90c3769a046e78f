using System.Diagnostics;
using System.Net;
using System.Text;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>
/// Resilience under real failures on real sockets: smoke tests that the attempt loop is wired to real
/// connections, timers and bodies. The promises of Resilience/README.md themselves (retry decisions,
/// timeouts, budget, breakers, ejection) are proved on a fake clock in InMemory/.
/// </summary>
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
        // Wiring only: real timers end real attempts. The timing itself is AttemptLoopTests' (fake clock, exact).
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"{clock.Elapsed}");
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
