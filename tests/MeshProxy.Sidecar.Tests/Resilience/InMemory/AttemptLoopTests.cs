using MeshProxy.Sidecar.Resilience;

namespace MeshProxy.Sidecar.Tests.Resilience.InMemory;

/// <summary>
/// The attempt loop on a fake clock with a scripted upstream: the retry decision and retryOn conditions,
/// per-try and route timeouts, backoff, and the retry budget. What ChaosTests proved over sockets with
/// wall-clock bounds is proved here in fake time, exactly.
/// </summary>
public sealed class AttemptLoopTests
{
    private const int A = 9001;
    private const int B = 9002;

    private static string Budget(int percent, int minPerSecond) =>
        Chaos.Policy($"retryBudget: {{ percent: {percent}, minRetriesPerSecond: {minPerSecond} }}");

    [Fact]
    public void A_503_is_retried_on_another_endpoint_and_the_caller_sees_only_the_success()
    {
        var mesh = new InMemoryForwarder([A, B], Chaos.Route("{ attempts: 3, retryOn: 5xx }"));
        mesh.Upstream.Script = a => a.Number == 0 ? Outcome.Status(503, "down") : Outcome.Ok;

        var reply = mesh.Send("GET", "/work");

        Assert.Equal(200, reply.Status);
        Assert.Equal("ok", reply.Body);
        Assert.Null(reply.Flags);
        Assert.Equal(2, reply.Result.Attempts);
        var attempts = mesh.Upstream.Attempts;
        Assert.Equal(2, attempts.Count);
        Assert.NotEqual(attempts[0].Endpoint, attempts[1].Endpoint); // a retry avoids the endpoint that failed
        Assert.Equal(1, mesh.Cluster.State.Stats.Retries);
    }

    [Theory]
    [InlineData("5xx", 500, true)]
    [InlineData("5xx", 404, false)]
    [InlineData("gateway-error", 502, true)]
    [InlineData("gateway-error", 500, false)]
    [InlineData("retriable-4xx", 409, true)]
    [InlineData("\"retriable-status-codes,418\"", 418, true)]
    [InlineData("connect-failure", 503, false)]
    public void RetryOn_names_the_statuses_that_are_retried(string retryOn, int status, bool retried)
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route($"{{ attempts: 1, retryOn: {retryOn} }}"));
        mesh.Upstream.Script = a => a.Number == 0 ? Outcome.Status(status, "first") : Outcome.Ok;

        var reply = mesh.Send("GET", "/x");

        Assert.Equal(retried ? 2 : 1, mesh.Upstream.Attempts.Count);
        Assert.Equal(retried ? 200 : status, reply.Status);
    }

    [Theory]
    [InlineData("connect-failure", "ConnectFailure", true)]
    [InlineData("connect-failure", "Reset", false)]
    [InlineData("reset", "Reset", true)]
    [InlineData("reset", "ConnectFailure", true)] // reset covers every failure without a response
    [InlineData("refused-stream", "ConnectFailure", false)]
    [InlineData("5xx", "Reset", true)] // 5xx covers every failure without a response
    [InlineData("5xx", "ConnectFailure", true)]
    [InlineData("gateway-error", "Hang", true)] // a per-try timeout
    public void RetryOn_names_the_failures_that_are_retried(string retryOn, string failure, bool retried)
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route($"{{ attempts: 1, perTryTimeout: 100ms, retryOn: {retryOn} }}"));
        var first = failure switch
        {
            "ConnectFailure" => Outcome.ConnectFailure,
            "Reset" => Outcome.Reset,
            _ => Outcome.Hang,
        };
        mesh.Upstream.Script = a => a.Number == 0 ? first : Outcome.Ok;

        var reply = mesh.Send("GET", "/x");

        Assert.Equal(retried ? 2 : 1, mesh.Upstream.Attempts.Count);
        Assert.Equal(retried ? 200 : failure == "Hang" ? 504 : 503, reply.Status);
    }

    [Fact]
    public void A_post_that_may_have_arrived_is_never_sent_twice()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 3, retryOn: \"5xx,reset,gateway-error\" }"));
        mesh.Upstream.Script = _ => Outcome.Reset; // received, then the connection dies before any answer

        for (var i = 0; i < 10; i++)
        {
            var reply = mesh.Send("POST", "/pay", "charge 10");
            Assert.Equal(503, reply.Status);
            Assert.Equal("UC", reply.Flags);
        }

        Assert.Equal(10, mesh.Upstream.Received(A));

        // The same failure on a GET is retried: it is safe to repeat.
        Assert.Equal(503, mesh.Send("GET", "/balance").Status);
        Assert.Equal(14, mesh.Upstream.Received(A));
    }

    [Fact]
    public void A_post_that_never_left_is_retried_on_another_endpoint_with_its_body()
    {
        var mesh = new InMemoryForwarder([A, B], Chaos.Route("{ attempts: 2, retryOn: connect-failure }") +
            Chaos.Policy("loadBalancer: { simple: ROUND_ROBIN }"));
        mesh.Upstream.Script = a => a.Endpoint.EndsWith($":{A}", StringComparison.Ordinal) ? Outcome.ConnectFailure : Outcome.Ok;

        for (var i = 0; i < 4; i++)
        {
            var reply = mesh.Send("POST", "/orders", $"order {i}");
            Assert.Equal(200, reply.Status);
        }

        Assert.Equal(4, mesh.Upstream.Received(B));
        Assert.All(mesh.Upstream.Attempts.Where(a => a.Endpoint.EndsWith($":{B}", StringComparison.Ordinal)), a => Assert.StartsWith("order ", a.Body));
    }

    [Fact]
    public void Retries_used_up_return_the_last_answer_flagged_URX()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 2, retryOn: 5xx }"));
        mesh.Upstream.Script = _ => Outcome.Status(503, "upstream says no");

        var reply = mesh.Send("GET", "/other");

        Assert.Equal(503, reply.Status);
        Assert.Equal("upstream says no", reply.Body);
        Assert.Equal("URX", reply.Flags);
        Assert.Equal(3, mesh.Upstream.Attempts.Count);
    }

    [Fact]
    public void Per_try_timeout_retries_then_answers_504_UT()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 2, perTryTimeout: 200ms, retryOn: reset }"));
        mesh.Upstream.Script = _ => Outcome.Hang;

        var reply = mesh.Send("GET", "/slow");

        Assert.Equal(504, reply.Status);
        Assert.Contains("UT", reply.Flags!.Split(','));
        Assert.Equal(3, mesh.Upstream.Attempts.Count);
        Assert.InRange(reply.ElapsedMs, 550, 2000); // the socket test's bound, kept
        // Exactly: three tries of 200 ms, with the two backoffs between them (at most 25 ms, then 50 ms).
        Assert.InRange(reply.ElapsedMs, 600, 600 + 25 + 50);
        var at = mesh.Upstream.Attempts.Select(a => a.AtMs).ToArray();
        Assert.InRange(at[1] - at[0], 200, 225);
        Assert.InRange(at[2] - at[1], 200, 250);
    }

    [Fact]
    public void Route_timeout_bounds_all_attempts_and_answers_504_UT()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 5, perTryTimeout: 200ms, retryOn: reset }", timeout: "500ms"));
        mesh.Upstream.Script = _ => Outcome.Hang;

        var reply = mesh.Send("GET", "/slow");

        Assert.Equal(504, reply.Status);
        Assert.Contains("UT", reply.Flags!.Split(','));
        Assert.InRange(reply.ElapsedMs, 450, 1500); // the socket test's bound, kept
        Assert.Equal(500, reply.ElapsedMs); // exactly the route's timeout
        Assert.InRange(mesh.Upstream.Attempts.Count, 2, 3);
        Assert.Equal(1, mesh.Cluster.State.Stats.Timeouts);
    }

    [Fact]
    public void A_response_ends_the_per_try_timeout_but_not_the_route_timeout()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 2, perTryTimeout: 100ms, retryOn: reset }", timeout: "1s"));
        mesh.Upstream.Script = _ => Outcome.After(TimeSpan.FromMilliseconds(60), Outcome.Ok);

        var reply = mesh.Send("GET", "/ok");

        Assert.Equal(200, reply.Status);
        Assert.Equal(60, reply.ElapsedMs);
        Assert.Single(mesh.Upstream.Attempts);
    }

    [Fact]
    public void Backoff_between_retries_is_jittered_below_a_doubling_ceiling()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 4, retryOn: 5xx }") + Budget(100, 100));
        mesh.Upstream.Script = _ => Outcome.Status(503);

        var gaps = new List<long>();
        for (var i = 0; i < 20; i++)
        {
            var before = mesh.Upstream.Attempts.Count;
            mesh.Send("GET", "/x");
            var at = mesh.Upstream.Attempts.Skip(before).Select(a => a.AtMs).ToArray();
            Assert.Equal(5, at.Length);
            for (var retry = 1; retry < at.Length; retry++)
            {
                // Retry n waits a random time below 25 ms x 2^(n-1), capped at 250 ms.
                var ceiling = Math.Min(25 << (retry - 1), 250);
                Assert.InRange(at[retry] - at[retry - 1], 0, ceiling);
                gaps.Add(at[retry] - at[retry - 1]);
            }
        }

        Assert.True(gaps.Distinct().Count() > 5, "the backoff is jittered: " + string.Join(",", gaps));
    }

    [Fact]
    public void Grpc_timeout_is_rewritten_with_the_time_left_on_each_attempt()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 2, retryOn: 5xx }"));
        mesh.Upstream.Script = _ => Outcome.After(TimeSpan.FromMilliseconds(150), Outcome.Status(503));

        mesh.Send("GET", "/grpc.Svc/M", "\0\0\0\0\0", r =>
        {
            r.ContentType = "application/grpc";
            r.Headers["grpc-timeout"] = "2S";
        });

        var seen = mesh.Upstream.Attempts.Select(a => a.GrpcTimeout!).ToList();
        Assert.Equal(3, seen.Count);
        var ms = seen.Select(s => int.Parse(s.TrimEnd('m'), System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.All(seen, s => Assert.EndsWith("m", s));
        Assert.InRange(ms[0], 1800, 2000);
        Assert.True(ms[1] <= ms[0] - 150 && ms[2] <= ms[1] - 150, string.Join(", ", seen));
        Assert.Equal(2000, ms[0]); // nothing has elapsed yet on the fake clock
    }

    [Fact]
    public void A_grpc_unavailable_answer_is_retried_only_for_a_call_that_may_be_replayed()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 2, retryOn: unavailable }"));
        var calls = new Dictionary<string, int>();
        mesh.Upstream.Script = a =>
        {
            var n = calls[a.Path] = calls.GetValueOrDefault(a.Path) + 1;
            return Outcome.Status(200, "", grpcStatus: n == 1 ? 14 : 0);
        };

        static void Grpc(Microsoft.AspNetCore.Http.HttpRequest r) => r.ContentType = "application/grpc";

        // A gRPC call is a POST: the UNAVAILABLE answer proves it arrived, so it is not replayed...
        Assert.Equal("14", mesh.Send("POST", "/svc.Pay/Charge", "\0\0\0\0\0", Grpc).Headers["grpc-status"].ToString());

        // ...unless the caller vouches for replay with Idempotency-Key.
        Assert.Equal("0", mesh.Send("POST", "/svc.Pay/Quote", "\0\0\0\0\0", r =>
        {
            Grpc(r);
            r.Headers["Idempotency-Key"] = "q-1";
        }).Headers["grpc-status"].ToString());

        Assert.Equal(1, calls["/svc.Pay/Charge"]);
        Assert.Equal(2, calls["/svc.Pay/Quote"]);
    }

    [Fact]
    public void Retry_budget_caps_retries_during_a_total_outage()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 3, retryOn: 5xx }"));
        mesh.Upstream.Script = _ => Outcome.Status(503);

        const int Requests = 200;
        var started = mesh.Loop.NowMs;
        var exhausted = 0;
        for (var i = 0; i < Requests; i++)
        {
            var reply = mesh.Send("GET", "/down");
            Assert.Equal(503, reply.Status);
            if (reply.Flags == "UO")
            {
                exhausted++;
            }
        }

        // Budget: 20 % of requests, a floor of 10 per second, and one second's floor to start with.
        var seconds = (mesh.Loop.NowMs - started) / 1000.0;
        var received = mesh.Upstream.Attempts.Count;
        var bound = Requests * 1.2 + 10 + 10 * Math.Ceiling(seconds);
        Assert.True(received <= bound, $"{received} upstream attempts for {Requests} requests in {seconds:F1}s; bound {bound}");
        Assert.True(received >= Requests * 1.1, $"retries did happen: {received}");
        // A spent budget is a circuit breaker's refusal, flagged UO as Envoy flags it (not URX: these
        // requests had retries of their own left).
        Assert.True(exhausted > Requests / 2, $"{exhausted} answers flagged UO");
        Assert.True(mesh.Dump().RetriesExhausted > 0);
    }

    [Fact]
    public void The_budget_floor_refills_with_time()
    {
        // No ratio: only the floor of 10 retries a second (and the one second saved at the start).
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 1, retryOn: 5xx }") + Budget(0, 10));
        mesh.Upstream.Script = _ => Outcome.Status(503);

        int Retried(int requests)
        {
            var before = mesh.Upstream.Attempts.Count;
            for (var i = 0; i < requests; i++)
            {
                mesh.Send("GET", "/down");
            }

            return mesh.Upstream.Attempts.Count - before - requests;
        }

        // The backoffs themselves take fake time (at most 25 ms each), in which the floor refills a little:
        // at most one more retry for every ten.
        Assert.InRange(Retried(30), 10, 11); // the first second's floor, then (almost) nothing
        mesh.Loop.Run(() =>
        {
            mesh.Loop.Advance(TimeSpan.FromMilliseconds(500));
            return Task.CompletedTask;
        });
        Assert.InRange(Retried(30), 5, 6); // half a second later: half the floor
        mesh.Loop.Run(() =>
        {
            mesh.Loop.Advance(TimeSpan.FromMinutes(1));
            return Task.CompletedTask;
        });
        Assert.InRange(Retried(30), 10, 11); // a long quiet spell banks no more than one second's floor
    }

    [Fact]
    public void Requests_that_never_reached_the_upstream_are_retried_without_charging_the_budget()
    {
        // A spent budget: no ratio, no floor.
        var mesh = new InMemoryForwarder([A, B], Chaos.Route("{ attempts: 2, retryOn: \"connect-failure,5xx\" }") + Budget(0, 0));
        mesh.Upstream.Script = a => a.Endpoint.EndsWith($":{A}", StringComparison.Ordinal) ? Outcome.ConnectFailure : Outcome.Ok;

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(200, mesh.Send("GET", "/x").Status);
        }

        Assert.Equal(0, mesh.Cluster.State.Stats.RetriesExhausted);

        // A delivered failure is charged, and the empty budget refuses its retry.
        mesh.Upstream.Script = _ => Outcome.Status(503);
        var refused = mesh.Send("GET", "/y");
        Assert.Equal("UO", refused.Flags);
        Assert.Equal(1, mesh.Cluster.State.Stats.RetriesExhausted);
    }
}
