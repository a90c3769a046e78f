using MeshProxy.Sidecar.Resilience;

namespace MeshProxy.Sidecar.Tests.Resilience.InMemory;

/// <summary>
/// Admission on a fake clock with a scripted upstream: the circuit breakers (max requests, max retries) and
/// the pending queue in front of a full connection or stream limit, with its two timeouts.
/// </summary>
public sealed class AdmissionTests
{
    private const int A = 9001;

    private static string Pool(string connectionPool) => Chaos.Policy("connectionPool: " + connectionPool);

    /// <summary>A slot was handed to a pending request, whose attempt is on its way (through the thread pool) to the upstream.</summary>
    private static Func<bool> Granting(InMemoryForwarder mesh) => () => mesh.Cluster.State.Serving.Count > mesh.Upstream.InFlight;

    [Fact]
    public void Circuit_breaker_overflow_answers_503_UO_at_once()
    {
        var mesh = new InMemoryForwarder([A], Pool("{ http: { http2MaxRequests: 2 } }"));
        var release = new TaskCompletionSource();
        mesh.Upstream.Script = _ => Outcome.When(release.Task, Outcome.Ok);

        mesh.Loop.Run(async () =>
        {
            var held = new[] { mesh.SendAsync("GET", "/1"), mesh.SendAsync("GET", "/2") };
            Assert.Equal(2, mesh.Upstream.InFlight);

            var overflow = await mesh.SendAsync("GET", "/3");
            Assert.Equal(503, overflow.Status);
            Assert.Equal("UO", overflow.Flags);
            Assert.Equal(0, overflow.ElapsedMs); // at once: no time passed on the fake clock

            release.SetResult();
            Assert.All(await Task.WhenAll(held), r => Assert.Equal(200, r.Status));
        });

        Assert.Equal(2, mesh.Upstream.Attempts.Count);
        Assert.Equal(1, mesh.Cluster.State.Stats.Overflow);
    }

    [Fact]
    public void Over_max_connections_requests_wait_as_pending_and_only_pending_overflow_answers_503_UO()
    {
        var mesh = new InMemoryForwarder([A], Pool("{ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 2 } }"));
        mesh.Upstream.Script = _ => Outcome.After(TimeSpan.FromMilliseconds(400), Outcome.Ok);

        // One served, two pending: all three succeed, one after the other on the one connection.
        var three = mesh.Loop.Run(() => Task.WhenAll(Enumerable.Range(0, 3).Select(_ => mesh.SendAsync("GET", "/x"))), handingOver: Granting(mesh));
        Assert.All(three, r => Assert.Equal(200, r.Status));
        Assert.InRange(three.Max(r => r.ElapsedMs), 1100, 5000); // the socket test's bound, kept
        Assert.InRange(three.Max(r => r.ElapsedMs), 1200, 1300); // three times 400 ms, one after the other
        Assert.Equal(400, three.Min(r => r.ElapsedMs));

        // Six at once: one served, two pending, three refused at once.
        var six = mesh.Loop.Run(() => Task.WhenAll(Enumerable.Range(0, 6).Select(_ => mesh.SendAsync("GET", "/x"))), handingOver: Granting(mesh));
        Assert.Equal(3, six.Count(r => r.Status == 200));
        var refused = six.Where(r => r.Status != 200).ToList();
        Assert.Equal(3, refused.Count);
        Assert.All(refused, r =>
        {
            Assert.Equal(503, r.Status);
            Assert.Equal("UO", r.Flags);
            Assert.Equal(0, r.ElapsedMs);
        });

        Assert.Equal(6, mesh.Upstream.Attempts.Count);
        Assert.Equal(0, mesh.Cluster.State.Serving.Count);
        Assert.Equal(0, mesh.Cluster.State.Serving.Waiting);
    }

    [Fact]
    public void A_pending_request_waits_no_longer_than_the_connect_timeout()
    {
        var mesh = new InMemoryForwarder([A], Pool("{ tcp: { maxConnections: 1, connectTimeout: 300ms } }"));
        mesh.Upstream.Script = _ => Outcome.After(TimeSpan.FromMilliseconds(1500), Outcome.Ok);

        mesh.Loop.Run(async () =>
        {
            var first = mesh.SendAsync("GET", "/x");
            Assert.Equal(1, mesh.Upstream.InFlight);

            var second = await mesh.SendAsync("GET", "/x");
            Assert.Equal(503, second.Status);
            Assert.Equal("UO", second.Flags);
            Assert.InRange(second.ElapsedMs, 250, 1200); // the socket test's bound, kept
            Assert.Equal(300, second.ElapsedMs);
            Assert.Equal(200, (await first).Status);
        });

        Assert.Single(mesh.Upstream.Attempts);
    }

    [Fact]
    public void The_deadline_counts_from_the_request_start_including_its_time_pending()
    {
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 0 }", timeout: "200ms") +
            Pool("{ tcp: { maxConnections: 1, connectTimeout: 300ms } }"));
        mesh.Upstream.Script = _ => Outcome.After(TimeSpan.FromMilliseconds(150), Outcome.Ok);

        mesh.Loop.Run(async () =>
        {
            var first = mesh.SendAsync("GET", "/x");
            var second = await mesh.SendAsync("GET", "/x");
            Assert.Equal(200, (await first).Status);
            // The slot came free at 150 ms, before the deadline: the second is served, and its own
            // deadline (200 ms from its start) cuts its attempt short.
            Assert.Equal(504, second.Status);
            Assert.Equal("UT", second.Flags);
            Assert.Equal(200, second.ElapsedMs);
        }, handingOver: Granting(mesh));
    }

    [Fact]
    public void A_request_still_pending_at_its_deadline_answers_504_UT_not_503_UO()
    {
        // "/held" has no deadline and keeps the one connection; everything else has 200 ms.
        var mesh = new InMemoryForwarder([A], """
            apiVersion: meshproxy.io/v1alpha1
            kind: HttpRoute
            metadata: { name: svc, namespace: test }
            spec:
              hosts: [svc]
              http:
              - name: held
                match: [{ uri: { prefix: /held } }]
                route: [{ destination: { host: svc } }]
                retries: { attempts: 0 }
              - name: bounded
                route: [{ destination: { host: svc } }]
                retries: { attempts: 0 }
                timeout: 200ms
            """ + Pool("{ tcp: { maxConnections: 1, connectTimeout: 300ms } }"));
        var release = new TaskCompletionSource();
        mesh.Upstream.Script = _ => Outcome.When(release.Task, Outcome.Ok);

        mesh.Loop.Run(async () =>
        {
            var first = mesh.SendAsync("GET", "/held");
            var second = await mesh.SendAsync("GET", "/x");
            Assert.Equal(504, second.Status);
            Assert.Equal("UT", second.Flags);
            Assert.Equal(200, second.ElapsedMs);
            release.SetResult();
            Assert.Equal(200, (await first).Status);
        });

        Assert.Single(mesh.Upstream.Attempts);
        Assert.Equal(1, mesh.Cluster.State.Stats.Timeouts);
    }

    [Fact]
    public void Concurrent_retries_over_max_retries_return_the_original_failure_at_once_flagged_UO()
    {
        // "/held": a 503, then the retry is held until released. "/other": always 503.
        var release = new TaskCompletionSource();
        var mesh = new InMemoryForwarder([A], Chaos.Route("{ attempts: 2, retryOn: 5xx }") + Pool("{ http: { maxRetries: 1 } }"));
        var calls = new Dictionary<string, int>();
        mesh.Upstream.Script = a =>
        {
            var n = calls[a.Path] = calls.GetValueOrDefault(a.Path) + 1;
            return a.Path == "/held" && n == 2 ? Outcome.When(release.Task, Outcome.Ok) : Outcome.Status(503, "upstream says no");
        };

        mesh.Loop.Run(async () =>
        {
            var held = mesh.SendAsync("GET", "/held");
            mesh.Loop.AdvanceUntil(() => calls.GetValueOrDefault("/held") == 2); // after its backoff, the retry is at the upstream

            // The one retry slot is taken: the next failure is not retried, and the caller gets the upstream's
            // own answer, flagged UO as Envoy flags a retry overflow (URX is for a request's retries used up).
            var overflow = await mesh.SendAsync("GET", "/other");
            Assert.Equal(503, overflow.Status);
            Assert.Equal("upstream says no", overflow.Body);
            Assert.Equal("UO", overflow.Flags);
            Assert.Equal(1, calls["/other"]);
            Assert.Equal(1, mesh.Dump().RetryOverflow);
            Assert.Equal(1, mesh.Dump().ActiveRetries);

            release.SetResult();
            Assert.Equal(200, (await held).Status);

            // The slot is free again: the same failure is retried twice, then returned with URX.
            var exhausted = await mesh.SendAsync("GET", "/other");
            Assert.Equal(503, exhausted.Status);
            Assert.Equal("URX", exhausted.Flags);
        });

        Assert.Equal(4, calls["/other"]);
        Assert.Equal(0, mesh.Dump().ActiveRetries);
    }
}
