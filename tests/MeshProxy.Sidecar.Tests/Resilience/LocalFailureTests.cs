using System.Net;
using System.Net.Http;
using System.Text.Json;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Pipelines;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Telemetry;
using MeshProxy.Sidecar.Tests.Identity;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Yarp.ReverseProxy.Forwarder;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>
/// Issue 14, findings 5, 7 and 8: a request the sidecar itself could not send (no certificate yet) is held,
/// then forwarded or answered 503 SNR, and never counted against an upstream; a dead replica of a
/// two-endpoint service costs almost nothing with the defaults; a failure is one log line, no stack trace.
/// </summary>
public sealed class LocalFailureTests
{
    // ---- the hold (Pipelines/OutboundReadiness.cs), on injected time ----

    [Fact]
    public async Task The_hold_ends_when_the_certificate_arrives_without_time_passing()
    {
        var (time, identity, readiness) = AwaitingCertificate();
        var wait = readiness.WaitAsync(static (r, _) => r.HasCertificate, 0, CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(4.9));
        await Task.Yield();
        Assert.False(wait.IsCompleted); // still holding: nothing polls, nothing gave up early

        identity.Store.Update(StoreSvid(), RootA());
        Assert.True(await wait.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task The_hold_gives_up_after_its_bound_when_nothing_arrives()
    {
        var (time, _, readiness) = AwaitingCertificate();
        var wait = readiness.WaitAsync(static (r, _) => r.HasCertificate, 0, CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.False(await wait.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));

        // A sidecar without an identity (plaintext only) never waits for one.
        var plain = new OutboundReadiness(new Configuration.SnapshotStore(), new SidecarIdentity(), time, new OutboundReadinessOptions());
        Assert.True(await plain.WaitAsync(static (r, _) => r.HasCertificate, 0, CancellationToken.None));
    }

    /// <summary>A 5 s hold on fake time, for a sidecar whose identity is on and whose SVID has not come.</summary>
    private static (FakeTimeProvider Time, SidecarIdentity Identity, OutboundReadiness Readiness) AwaitingCertificate()
    {
        var time = new FakeTimeProvider();
        var identity = new SidecarIdentity();
        identity.Enable();
        return (time, identity, new OutboundReadiness(new Configuration.SnapshotStore(), identity, time, new OutboundReadinessOptions { Hold = TimeSpan.FromSeconds(5) }));
    }

    // ---- classification: this sidecar's own failures are not the endpoint's ----

    [Fact]
    public void An_own_failure_wrapped_as_a_connection_error_is_classified_own_and_flagged_SNR()
    {
        // SocketsHttpHandler wraps what its ConnectCallback throws as a connection error.
        var wrapped = new HttpRequestException(HttpRequestError.ConnectionError, "no certificate yet (billing:80)",
            new OwnFailureException("no certificate yet: cannot originate mTLS to billing:80"));

        Assert.Equal(FailureKind.Own, ResilientForwarder.Classify(ForwarderError.Request, wrapped));
        var failure = UpstreamFailure.Classify(ForwarderError.Request, wrapped);
        Assert.Equal(ResponseFlags.SidecarNotReady, failure.Flags);
        Assert.Equal("SNR", failure.Flags.ToCode());
        Assert.Equal(503, failure.StatusCode);
        Assert.False(RetryPolicy.Default.MatchesFailure(FailureKind.Own));

        // A real connect failure stays one, and its reason names the cause without a stack trace.
        var refused = new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused (127.0.0.1:1)",
            new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.ConnectionRefused));
        Assert.Equal(FailureKind.ConnectFailure, ResilientForwarder.Classify(ForwarderError.Request, refused));
        var uf = UpstreamFailure.Classify(ForwarderError.Request, refused);
        Assert.Equal(ResponseFlags.UpstreamConnectionFailure, uf.Flags);
        Assert.StartsWith("upstream connect error: SocketException (ConnectionRefused): ", uf.Reason);
        Assert.DoesNotContain(" at ", uf.Reason);
    }

    // ---- the default passive health check ----

    [Fact]
    public void The_default_detector_ejects_after_five_connect_failures_and_judges_nothing_else()
    {
        var policy = OutlierPolicy.Default;
        Assert.True(policy.IsDefault);
        Assert.Same(policy, ClusterPolicy.Default.OutlierDetection);
        Assert.Same(policy, ClusterPolicy.From(new DestinationPolicySpec("svc", LoadBalancerKind.LeastRequest, ConnectionPoolSpec.Default, null, RetryBudgetSpec.Default)).OutlierDetection);
        Assert.Null(ClusterPolicy.From(new DestinationPolicySpec("svc", LoadBalancerKind.LeastRequest, ConnectionPoolSpec.Default, OutlierDetectionSpec.Disabled, RetryBudgetSpec.Default)).OutlierDetection);
        Assert.Equal(TimeSpan.FromSeconds(30), policy.BaseEjectionTime);
        Assert.Equal(1, policy.MaxEjected(2));

        var health = new EndpointHealth();
        for (var i = 0; i < 20; i++)
        {
            // Resets, timeouts, 5xx and gateway errors: none of the default detector's business.
            Assert.False(health.Record(AttemptResult.LocalOriginFailure, policy));
            Assert.False(health.Record(AttemptResult.ServerError, policy));
            Assert.False(health.Record(AttemptResult.GatewayError, policy));
        }

        for (var i = 1; i < 5; i++)
        {
            Assert.False(health.Record(AttemptResult.ConnectFailure, policy));
        }

        Assert.True(health.Record(AttemptResult.ConnectFailure, policy));

        // A response ends the run.
        var other = new EndpointHealth();
        for (var i = 0; i < 4; i++)
        {
            other.Record(AttemptResult.ConnectFailure, policy);
        }

        other.Record(AttemptResult.Success, policy);
        Assert.False(other.Record(AttemptResult.ConnectFailure, policy));
    }

    [Fact]
    public async Task A_stopped_replica_of_two_costs_under_one_percent_with_the_defaults()
    {
        await using var alive = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        var doomed = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        var doomedPort = doomed.Port;
        await using var chaos = await Chaos.StartAsync([alive.Port, doomedPort]); // no route, no DestinationPolicy: the defaults
        try
        {
            Assert.Equal(1.0, await chaos.SuccessRateAsync(40, 4, HttpMethod.Get));
            Assert.True(doomed.Received > 0, "both endpoints served before the stop");
        }
        finally
        {
            await doomed.DisposeAsync(); // its listener closed: connections refused from now on
        }

        var rate = await chaos.SuccessRateAsync(400, 8, HttpMethod.Post);
        Assert.True(rate >= 0.99, $"success rate {rate:P1} with one of two replicas stopped");

        var health = await chaos.HealthAsync();
        Assert.True(health.GetProperty("outlierDetection").GetProperty("default").GetBoolean());
        foreach (var endpoint in health.GetProperty("endpoints").EnumerateArray())
        {
            var ejections = endpoint.GetProperty("ejections").GetInt64();
            if (endpoint.GetProperty("endpoint").GetString() == $"127.0.0.1:{doomedPort}")
            {
                Assert.True(ejections >= 1, "the stopped replica was never ejected");
            }
            else
            {
                Assert.Equal(0, ejections);
            }
        }
    }

    [Fact]
    public async Task With_outlier_detection_off_connect_failure_retries_are_not_starved_by_the_retry_budget()
    {
        await using var alive = await ChaosBackend.StartAsync(ChaosBackend.Ok);
        var deadPort = ClosedPort.Next(); // nothing listens
        await using var chaos = await Chaos.StartAsync([alive.Port, deadPort], """
            apiVersion: meshproxy.io/v1alpha1
            kind: DestinationPolicy
            metadata: { name: svc, namespace: test }
            spec:
              host: svc
              outlierDetection: { enabled: false }
            """);

        // Every request that picks the dead endpoint needs a retry; the budget (20 % + 10/s) would refuse
        // most of them if those retries of requests that never arrived were charged to it.
        var rate = await chaos.SuccessRateAsync(300, 8, HttpMethod.Post);
        Assert.True(rate >= 0.99, $"success rate {rate:P1}");

        var health = await chaos.HealthAsync();
        Assert.Equal(JsonValueKind.Null, health.GetProperty("outlierDetection").ValueKind);
        Assert.Empty(await chaos.EjectedAsync());
    }

    // ---- requests before the first certificate, over real mTLS ----

    private const string BillingPolicy = """
        apiVersion: meshproxy.io/v1alpha1
        kind: DestinationPolicy
        metadata: { name: billing, namespace: test }
        spec:
          host: billing
          outlierDetection: { consecutive5xxErrors: 1, maxEjectionPercent: 100 }
        """;

    [Fact]
    public async Task Requests_before_the_first_certificate_are_held_then_sent_over_mtls()
    {
        await using var mesh = await CertLaterMesh.StartAsync(TimeSpan.FromSeconds(60));
        var requests = Enumerable.Range(0, 5).Select(_ => mesh.SendAsync()).ToArray();

        // Held, not failed: before the fix each was answered 503 at once.
        await Task.WhenAny(Task.WhenAll(requests), Task.Delay(TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken));
        Assert.All(requests, r => Assert.False(r.IsCompleted, "answered before the certificate arrived"));

        mesh.Caller.Identity.Store.Update(StoreSvid(), RootA()); // what the CA client does when the SVID comes
        foreach (var response in await Task.WhenAll(requests).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            response.Dispose();
        }

        Assert.Equal(5, mesh.App.Received);
        var health = await mesh.HealthAsync();
        Assert.Equal(0, health.GetProperty("ejectionsTotal").GetInt64());
    }

    [Fact]
    public async Task Without_a_certificate_the_request_gets_503_SNR_after_the_hold_and_blames_no_endpoint()
    {
        await using var mesh = await CertLaterMesh.StartAsync(TimeSpan.FromMilliseconds(200));

        for (var i = 0; i < 3; i++)
        {
            using var response = await mesh.SendAsync();
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("SNR", response.Headers.GetValues(LocalReply.FlagsHeader).Single());
            Assert.Contains("sidecar not ready", await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        }

        Assert.Equal(0, mesh.App.Received);
        Assert.Equal(3, mesh.CallerLog.Lines.Count(l => l.Message.Contains("Sidecar not ready SNR", StringComparison.Ordinal)));

        // No upstream was judged: nothing ejected (one failure would eject under this policy), no retry spent.
        var health = await mesh.HealthAsync();
        Assert.Equal(0, health.GetProperty("ejectionsTotal").GetInt64());
        Assert.All(health.GetProperty("endpoints").EnumerateArray(), e => Assert.False(e.GetProperty("ejected").GetBoolean()));

        // The certificate comes: the next request goes through at once.
        mesh.Caller.Identity.Store.Update(StoreSvid(), RootA());
        using var ok = await mesh.SendAsync();
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    // ---- one log line per failure (a real process, its own stdout and stderr) ----

    [Fact]
    public async Task A_failure_writes_one_log_line_with_flag_and_reason_and_no_stack_trace()
    {
        var dead = ClosedPort.Next();
        var yaml = new MeshYaml("client", ClosedPort.Next()).Service("svc", 80, "HTTP", dead).Raw(Chaos.Route("{ attempts: 0 }"));
        await using var sidecar = await SidecarProcess.StartAsync(yaml);
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };

        const int Failures = 5;
        for (var i = 0; i < Failures; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{sidecar.Outbound}/x");
            request.Headers.Host = "svc";
            using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("UF", response.Headers.GetValues(LocalReply.FlagsHeader).Single());
        }

        // The lines of a failure come before its response is written; a short grace for the console writer.
        var lines = Array.Empty<string>();
        for (var i = 0; i < 50; i++)
        {
            lines = sidecar.Process.Output.Split('\n');
            if (lines.Count(l => l.Contains("Upstream failure UF", StringComparison.Ordinal)) >= Failures)
            {
                break;
            }

            await Task.Delay(100, TestContext.Current.CancellationToken);
        }

        var failures = lines.Where(l => l.Contains("Upstream failure UF", StringComparison.Ordinal)).ToArray();
        Assert.Equal(Failures, failures.Length);
        Assert.All(failures, l => Assert.Contains("SocketException (ConnectionRefused)", l));
        Assert.DoesNotContain(lines, l => l.Contains("HttpForwarder", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains(" at System.", StringComparison.Ordinal) || l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        Assert.All(lines, l => Assert.True(l.Length < 1000, $"a {l.Length}-character log line: {l}"));
    }

    private static X509Svid StoreSvid() =>
        X509Svid.FromPem(File.ReadAllText(MeshPki.Shared.Cert("store")), File.ReadAllText(MeshPki.Shared.Key("store")));

    private static TrustBundle RootA() => TrustBundle.FromPem(File.ReadAllText(MeshPki.Shared.Cert("rootA")));

    /// <summary>
    /// caller -> sidecar "store" whose identity is on but whose SVID has not come yet (as in control-plane mode
    /// before the CA answers) -> sidecar "billing" (STRICT mTLS) -> billing app. The caller's hold is <c>hold</c>.
    /// </summary>
    private sealed class CertLaterMesh : IAsyncDisposable
    {
        private readonly HttpClient _client = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(90) };

        public ChaosBackend App { get; private set; } = null!;

        public TestSidecar Billing { get; private set; } = null!;

        public TestSidecar Caller { get; private set; } = null!;

        public LogCapture CallerLog { get; } = new();

        public static async Task<CertLaterMesh> StartAsync(TimeSpan hold)
        {
            var mesh = new CertLaterMesh();
            try
            {
                mesh.App = await ChaosBackend.StartAsync(ChaosBackend.Ok);
                var files = MeshPki.Shared.WriteFiles(Directory.CreateTempSubdirectory("meshproxy-certlater-").FullName, "billing");
                mesh.Billing = await TestSidecar.StartAsync(new MeshYaml("billing", mesh.App.Port, tls: files).Mtls("STRICT"));
                var identity = new SidecarIdentity();
                identity.Enable(); // an identity is configured; its SVID is what arrives later
                mesh.Caller = await TestSidecar.StartAsync(
                    new MeshYaml("store", 1).MeshService("billing", 80, "HTTP", "billing", null, mesh.Billing.Inbound.Port).Raw(BillingPolicy),
                    services =>
                    {
                        services.AddSingleton(identity);
                        services.AddSingleton(new OutboundReadinessOptions { Hold = hold });
                        mesh.CallerLog.Register(services);
                    });
                return mesh;
            }
            catch
            {
                await mesh.DisposeAsync();
                throw;
            }
        }

        public Task<HttpResponseMessage> SendAsync()
        {
            var request = new HttpRequestMessage(HttpMethod.Get, new Uri(Caller.OutboundUri, "/x"));
            request.Headers.Host = "billing";
            return _client.SendAsync(request);
        }

        public async Task<JsonElement> HealthAsync()
        {
            using var dump = JsonDocument.Parse(await _client.GetStringAsync($"http://{Caller.Admin}/config_dump"));
            return Chaos.FindHealth(dump.RootElement)?.Clone() ?? throw new InvalidOperationException("no cluster health in /config_dump");
        }

        public async ValueTask DisposeAsync()
        {
            _client.Dispose();
            foreach (var sidecar in new[] { Caller, Billing })
            {
                if (sidecar is not null)
                {
                    await sidecar.DisposeAsync();
                }
            }

            if (App is not null)
            {
                await App.DisposeAsync();
            }
        }
    }
}
