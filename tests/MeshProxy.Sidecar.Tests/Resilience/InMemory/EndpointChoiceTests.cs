namespace MeshProxy.Sidecar.Tests.Resilience.InMemory;

/// <summary>
/// Endpoint choice on a fake clock with a scripted upstream: outlier ejection, its end, the cap on how many
/// endpoints are ejected at once, and the LEAST_REQUEST and PEAK_EWMA balancers (with EWMA decay in time).
/// </summary>
public sealed class EndpointChoiceTests
{
    private const int Bad = 9001;
    private const int Good = 9002;

    private static bool Is(Attempt a, int port) => a.Endpoint.EndsWith($":{port}", StringComparison.Ordinal);

    private static string[] Ejected(InMemoryForwarder mesh) =>
        [.. mesh.Dump().Endpoints.Where(e => e.Ejected).Select(e => e.Endpoint)];

    [Fact]
    public void An_ejected_endpoint_takes_no_traffic_and_comes_back_on_its_own()
    {
        var broken = true;
        var mesh = new InMemoryForwarder([Bad, Good], Chaos.Route("{ attempts: 0 }") + Chaos.Policy(
            "loadBalancer: { simple: ROUND_ROBIN }",
            "outlierDetection: { consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 1s, maxEjectionPercent: 50 }"));
        mesh.Upstream.Script = a => Is(a, Bad) && broken ? Outcome.Status(500) : Outcome.Ok;

        for (var i = 0; i < 10; i++)
        {
            mesh.Send("GET", "/x");
        }

        var badBefore = mesh.Upstream.Received(Bad);
        Assert.Equal(3, badBefore);
        Assert.Equal([$"127.0.0.1:{Bad}"], Ejected(mesh));
        Assert.Equal(1, mesh.Dump().EjectionsTotal);

        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(200, mesh.Send("GET", "/x").Status);
        }

        Assert.Equal(badBefore, mesh.Upstream.Received(Bad));

        broken = false;
        mesh.Loop.Run(() =>
        {
            // Just before the end of its 1 s ejection: still out.
            mesh.Loop.Advance(TimeSpan.FromMilliseconds(990));
            return Task.CompletedTask;
        });
        Assert.Single(Ejected(mesh));
        mesh.Loop.Run(() =>
        {
            mesh.Loop.Advance(TimeSpan.FromMilliseconds(210)); // the socket test waited 1200 ms
            return Task.CompletedTask;
        });
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(200, mesh.Send("GET", "/x").Status);
        }

        Assert.True(mesh.Upstream.Received(Bad) >= badBefore + 4, $"the endpoint came back: {mesh.Upstream.Received(Bad) - badBefore} requests after ejection");
        Assert.Empty(Ejected(mesh));
    }

    [Fact]
    public void Max_ejection_percent_bounds_how_many_endpoints_are_ejected_at_once()
    {
        int[] failing = [9001, 9002, 9003];
        const int good = 9004;
        var mesh = new InMemoryForwarder([.. failing, good],
            Chaos.Policy("outlierDetection: { consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50 }"));
        mesh.Upstream.Script = a => Is(a, good) ? Outcome.Ok : Outcome.Status(500);

        for (var i = 0; i < 40; i++)
        {
            mesh.Send("GET", "/x");
        }

        // 4 endpoints, 50 %: two ejected; the third failing one keeps its traffic.
        var ejected = Ejected(mesh);
        Assert.Equal(2, ejected.Length);
        Assert.DoesNotContain($"127.0.0.1:{good}", ejected);
        Assert.Equal(2, mesh.Dump().EjectionsTotal);
        var notEjected = failing.Single(p => !ejected.Contains($"127.0.0.1:{p}"));
        Assert.True(mesh.Upstream.Received(notEjected) >= 10, $"the failing endpoint left in got {mesh.Upstream.Received(notEjected)} requests");

        // An ejection ends on the clock alone: at 60 s both are back.
        mesh.Loop.Run(() =>
        {
            mesh.Loop.Advance(TimeSpan.FromSeconds(60));
            return Task.CompletedTask;
        });
        Assert.Empty(Ejected(mesh));
    }

    [Fact]
    public void An_endpoint_that_dies_is_hidden_by_retries_and_serves_again_when_it_comes_back()
    {
        var dead = false;
        var mesh = new InMemoryForwarder([Good, Bad], Chaos.Policy(
            "loadBalancer: { simple: ROUND_ROBIN }",
            "outlierDetection: { splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2, interval: 1s, baseEjectionTime: 1s, maxEjectionPercent: 50 }"));
        mesh.Upstream.Script = a => Is(a, Bad) && dead ? Outcome.ConnectFailure : Outcome.Ok;

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(200, mesh.Send("GET", "/x").Status);
        }

        Assert.True(mesh.Upstream.Received(Bad) > 0);

        // Dead: connections are refused; the default retry policy (connect-failure) sends each failed
        // attempt to the other endpoint, so callers see no failure, and the dead one is ejected.
        dead = true;
        for (var i = 0; i < 40; i++)
        {
            Assert.Equal(200, mesh.Send("POST", "/x", "body").Status);
        }

        Assert.Equal([$"127.0.0.1:{Bad}"], Ejected(mesh));

        // Back: once its ejection ends it takes its share again.
        dead = false;
        var before = mesh.Upstream.Received(Bad);
        mesh.Loop.Run(() =>
        {
            mesh.Loop.Advance(TimeSpan.FromSeconds(1));
            return Task.CompletedTask;
        });
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(200, mesh.Send("GET", "/x").Status);
        }

        Assert.InRange(mesh.Upstream.Received(Bad) - before, 8, 12);
    }

    [Fact]
    public void Least_request_sends_new_requests_away_from_an_endpoint_holding_hung_requests()
    {
        int[] ports = [9001, 9002, 9003];
        var releases = ports.ToDictionary(p => p, _ => new TaskCompletionSource());
        var mesh = new InMemoryForwarder(ports); // LEAST_REQUEST is the default
        mesh.Upstream.Script = a => a.Path == "/hang"
            ? Outcome.When(releases[ports.Single(p => Is(a, p))].Task, Outcome.Ok)
            : Outcome.Ok;

        mesh.Loop.Run(async () =>
        {
            // 30 requests in flight, spread over the three; then the other two let theirs go: the first
            // endpoint is left holding its share, the others hold nothing.
            var hanging = Enumerable.Range(0, 30).Select(_ => mesh.SendAsync("GET", "/hang")).ToArray();
            releases[9002].SetResult();
            releases[9003].SetResult();
            var held = mesh.Upstream.InFlight;
            Assert.True(held >= 3, $"the first endpoint holds {held} requests");

            var before = mesh.Upstream.Received(9001);
            for (var i = 0; i < 100; i++)
            {
                Assert.Equal(200, (await mesh.SendAsync("GET", "/work")).Status);
            }

            var toBusy = mesh.Upstream.Received(9001) - before;
            Assert.True(toBusy <= 5, $"{toBusy} of 100 new requests went to the endpoint holding {held} (random: about 33)");
            Assert.Equal(0, toBusy); // exactly: a busy endpoint never wins a pair against an idle one

            releases[9001].SetResult();
            Assert.All(await Task.WhenAll(hanging), r => Assert.Equal(200, r.Status));
        });
    }

    [Fact]
    public void Peak_ewma_gives_a_slow_endpoint_a_small_share_once_warmed_and_forgives_it_in_time()
    {
        const int slow = 9001;
        var mesh = new InMemoryForwarder([slow, 9002, 9003], Chaos.Policy("loadBalancer: { simple: PEAK_EWMA }"));
        mesh.Upstream.Script = a => Outcome.After(TimeSpan.FromMilliseconds(Is(a, slow) ? 100 : 1), Outcome.Ok);

        // Warm up: until the slow endpoint has been measured at least once.
        for (var i = 0; i < 200 && mesh.Upstream.Received(slow) == 0; i++)
        {
            mesh.Send("GET", "/warm");
        }

        Assert.True(mesh.Upstream.Received(slow) > 0, "the slow endpoint was tried while warming up");
        var before = mesh.Upstream.Received(slow);
        for (var i = 0; i < 100; i++)
        {
            Assert.Equal(200, mesh.Send("GET", "/work").Status);
        }

        var share = mesh.Upstream.Received(slow) - before;
        Assert.True(share <= 15, $"the slow endpoint got {share} of 100 requests once warmed (unweighted by latency: about 33)");
        Assert.Equal(0, share); // exactly: a 100 ms peak against 1 ms ones, a request at a time

        // An idle endpoint's old peak fades (10 s decay) while the fast ones' samples pull theirs to 1 ms:
        // under a request a second, 100 e^(-t/10) falls below 1 + 29 e^(-t/10) after about 43 s, and the
        // slow endpoint is tried again. Only a clock that moves shows this; the fake one moves at once.
        before = mesh.Upstream.Received(slow);
        var seconds = 0;
        while (mesh.Upstream.Received(slow) == before && seconds < 120)
        {
            mesh.Loop.Run(() =>
            {
                mesh.Loop.Advance(TimeSpan.FromSeconds(1));
                return Task.CompletedTask;
            });
            seconds++;
            mesh.Send("GET", "/steady");
        }

        Assert.InRange(seconds, 30, 60);
    }
}
