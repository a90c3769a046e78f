using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>
/// The app's kubelet probes, rewritten by the injector to /app-health/... on the stats port: the real sidecar
/// process performs the original probe against a real Kestrel app (or a grpc-js health server) on 127.0.0.1 and
/// answers with its verdict.
/// </summary>
public sealed class AppProbeTests
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(30);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Http_and_tcp_probes_answer_with_the_apps_status_then_fail_once_the_app_is_down()
    {
        var app = await HealthApp.StartAsync();
        try
        {
            var probers = new JsonObject
            {
                ["/app-health/web/livez"] = new JsonObject
                {
                    ["httpGet"] = new JsonObject
                    {
                        ["path"] = "/healthz?deep=1",
                        ["port"] = app.Port,
                        ["scheme"] = "HTTP",
                        ["httpHeaders"] = new JsonArray
                        {
                            new JsonObject { ["name"] = "X-Probe", ["value"] = "liveness" },
                            new JsonObject { ["name"] = "Host", ["value"] = "web.internal" },
                        },
                    },
                    ["timeoutSeconds"] = 2,
                },
                ["/app-health/web/readyz"] = new JsonObject { ["tcpSocket"] = new JsonObject { ["port"] = app.Port }, ["timeoutSeconds"] = 1 },
                ["/app-health/web/startupz"] = new JsonObject { ["httpGet"] = new JsonObject { ["path"] = "/slow", ["port"] = app.Port }, ["timeoutSeconds"] = 1 },
            };
            await using var sidecar = await SidecarProcess.StartAsync(new MeshYaml("web", app.Port),
                new Dictionary<string, string> { ["MESHPROXY_APP_PROBERS"] = probers.ToJsonString() });
            using var kubelet = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            kubelet.DefaultRequestHeaders.UserAgent.ParseAdd("kube-probe/1.30");
            var stats = $"http://{sidecar.Stats}";

            // Healthy: the app's 200 and body come back; the app saw the probe's path, query, headers and Host.
            using (var live = await kubelet.GetAsync($"{stats}/app-health/web/livez", Ct))
            {
                Assert.Equal(HttpStatusCode.OK, live.StatusCode);
                Assert.Equal("ok\n", await live.Content.ReadAsStringAsync(Ct));
            }

            var seen = app.LastRequest!;
            Assert.Equal("/healthz?deep=1", seen.PathAndQuery);
            Assert.Equal("web.internal", seen.Host);
            Assert.Equal("liveness", seen.Probe);
            Assert.Equal("kube-probe/1.30", seen.UserAgent);
            Assert.Equal("127.0.0.1", seen.Remote);

            using (var ready = await kubelet.GetAsync($"{stats}/app-health/web/readyz", Ct))
            {
                Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            }

            // The app says it is unhealthy: its 503 is the answer.
            app.Status = StatusCodes.Status503ServiceUnavailable;
            using (var live = await kubelet.GetAsync($"{stats}/app-health/web/livez", Ct))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, live.StatusCode);
                Assert.Equal("unhealthy\n", await live.Content.ReadAsStringAsync(Ct));
            }

            // Slower than the probe's timeoutSeconds: a failure, in about that time.
            var started = DateTime.UtcNow;
            using (var startup = await kubelet.GetAsync($"{stats}/app-health/web/startupz", Ct))
            {
                Assert.Equal(HttpStatusCode.InternalServerError, startup.StatusCode);
                Assert.Contains("no answer within 1s", await startup.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
                Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(4));
            }

            // A path nobody configured.
            using (var unknown = await kubelet.GetAsync($"{stats}/app-health/other/livez", Ct))
            {
                Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
            }

            // The app is down: both kinds of probe fail, with the reason.
            await app.DisposeAsync();
            using (var live = await kubelet.GetAsync($"{stats}/app-health/web/livez", Ct))
            {
                Assert.Equal(HttpStatusCode.InternalServerError, live.StatusCode);
                Assert.Contains($"probe of the app on 127.0.0.1:{app.Port} failed", await live.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
            }

            using (var ready = await kubelet.GetAsync($"{stats}/app-health/web/readyz", Ct))
            {
                Assert.Equal(HttpStatusCode.InternalServerError, ready.StatusCode);
            }

            // The sidecar's own health is untouched by the app's.
            using var own = await kubelet.GetAsync($"{stats}/ready", Ct);
            Assert.Equal(HttpStatusCode.OK, own.StatusCode);
        }
        finally
        {
            await app.DisposeAsync();
        }
    }

    [Fact]
    public async Task Grpc_probes_pass_only_when_the_apps_health_server_says_serving_and_fail_with_the_reason_otherwise()
    {
        await using var app = ExternalProcess.Node("grpc-health-server.js");
        var port = JsonDocument.Parse(await app.WaitForLineAsync("\"port\"", PeerTimeout)).RootElement.GetProperty("port").GetInt32();
        JsonObject Grpc(string? service, int? timeoutSeconds = null)
        {
            var grpc = new JsonObject { ["port"] = port };
            if (service is not null)
            {
                grpc["service"] = service;
            }

            var probe = new JsonObject { ["grpc"] = grpc };
            if (timeoutSeconds is { } t)
            {
                probe["timeoutSeconds"] = t;
            }

            return probe;
        }

        var probers = new JsonObject
        {
            ["/app-health/api/livez"] = Grpc(service: null),
            ["/app-health/api/readyz"] = Grpc("billing.v1.Billing", timeoutSeconds: 3),
            ["/app-health/api/startupz"] = Grpc("hang", timeoutSeconds: 1),
            ["/app-health/warming/readyz"] = Grpc("warming"),
            ["/app-health/typo/readyz"] = Grpc("billing.v1.Biling"),
        };
        await using var sidecar = await SidecarProcess.StartAsync(new MeshYaml("api", port, "GRPC"),
            new Dictionary<string, string> { ["MESHPROXY_APP_PROBERS"] = probers.ToJsonString() });
        using var kubelet = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var stats = $"http://{sidecar.Stats}";

        async Task<(HttpStatusCode Status, string Body)> Probe(string path)
        {
            using var response = await kubelet.GetAsync(stats + path, Ct);
            return (response.StatusCode, await response.Content.ReadAsStringAsync(Ct));
        }

        // The server as a whole is SERVING; the health server was asked about "" with a deadline of the default 1 s.
        var live = await Probe("/app-health/api/livez");
        Assert.Equal((HttpStatusCode.OK, $"gRPC health of the server on 127.0.0.1:{port}: SERVING\n"), live);
        var check = JsonDocument.Parse(await app.WaitForLineAsync("\"check\":\"\"", PeerTimeout)).RootElement;
        Assert.InRange(check.GetProperty("deadlineMs").GetDouble(), 500, 1000);

        // The app's own verdicts other than SERVING are failures, and say which.
        var ready = await Probe("/app-health/api/readyz");
        Assert.Equal((HttpStatusCode.ServiceUnavailable, $"gRPC health of service 'billing.v1.Billing' on 127.0.0.1:{port}: NOT_SERVING\n"), ready);
        check = JsonDocument.Parse(await app.WaitForLineAsync("\"check\":\"billing.v1.Billing\"", PeerTimeout)).RootElement;
        Assert.InRange(check.GetProperty("deadlineMs").GetDouble(), 2000, 3000);

        var warming = await Probe("/app-health/warming/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, warming.Status);
        Assert.EndsWith(": UNKNOWN\n", warming.Body, StringComparison.Ordinal);

        // A service the health server does not know: grpc-status NOT_FOUND.
        var typo = await Probe("/app-health/typo/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, typo.Status);
        Assert.Contains("does not know service 'billing.v1.Biling' (NOT_FOUND: unknown service billing.v1.Biling)", typo.Body, StringComparison.Ordinal);

        // No answer: a failure once the probe's timeoutSeconds have passed, not before and not much after.
        var started = DateTime.UtcNow;
        var hang = await Probe("/app-health/api/startupz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, hang.Status);
        Assert.Contains("failed: no answer within 1s", hang.Body, StringComparison.Ordinal);
        Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(4));

        // The app is gone: the connection is refused, and the probe says so.
        await app.DisposeAsync();
        live = await Probe("/app-health/api/livez");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, live.Status);
        Assert.Contains($"gRPC health check of the server on 127.0.0.1:{port} failed: gRPC status UNAVAILABLE", live.Body, StringComparison.Ordinal);

        // The sidecar's own health is untouched by the app's.
        var own = await Probe("/ready");
        Assert.Equal(HttpStatusCode.OK, own.Status);
    }

    [Theory]
    [InlineData("not json", "MESHPROXY_APP_PROBERS: not JSON")]
    [InlineData("""{"/healthz":{"tcpSocket":{"port":8080}}}""", "the path must start with /app-health/")]
    [InlineData("""{"/app-health/web/livez":{"httpGet":{"port":"http"}}}""", "named ports are resolved by the injector")]
    [InlineData("""{"/app-health/web/livez":{"exec":{"command":["true"]}}}""", "must have httpGet, tcpSocket or grpc")]
    [InlineData("""{"/app-health/web/livez":{"grpc":{"port":"grpc"}}}""", "livez\"].grpc.port: must be a port number")]
    [InlineData("""{"/app-health/web/livez":{"grpc":{"port":7070,"service":7}}}""", "livez\"].grpc.service: must be a string")]
    public async Task A_malformed_probe_list_stops_the_sidecar_at_start_up_naming_what_is_wrong(string value, string expected)
    {
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
        await using var process = SidecarProcess.Launch(new MeshYaml("web", 8080).WriteTo(dir),
            new Dictionary<string, string> { ["MESHPROXY_APP_PROBERS"] = value });
        Assert.Equal(1, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains(expected, process.Output, StringComparison.Ordinal);
    }

    /// <summary>A Kestrel app whose /healthz answers what the test says, and remembers how it was asked.</summary>
    private sealed class HealthApp : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private bool _disposed;

        private HealthApp(WebApplication app, int port)
        {
            _app = app;
            Port = port;
        }

        public int Port { get; }

        public volatile int Status = StatusCodes.Status200OK;

        public SeenRequest? LastRequest { get; private set; }

        public static async Task<HealthApp> StartAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            HealthApp? self = null;
            app.MapGet("/healthz", (HttpContext context) =>
            {
                var request = context.Request;
                self!.LastRequest = new SeenRequest(
                    request.Path + request.QueryString, request.Host.Value ?? string.Empty, request.Headers["X-Probe"].ToString(),
                    request.Headers.UserAgent.ToString(), context.Connection.RemoteIpAddress?.ToString() ?? string.Empty);
                return Results.Text(self.Status == 200 ? "ok\n" : "unhealthy\n", statusCode: self.Status);
            });
            app.MapGet("/slow", async (CancellationToken ct) =>
            {
                await Task.Delay(TimeSpan.FromSeconds(5), ct);
                return "late\n";
            });
            await app.StartAsync();
            var port = new Uri(app.Urls.First()).Port;
            self = new HealthApp(app, port);
            return self;
        }

        public async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    private sealed record SeenRequest(string PathAndQuery, string Host, string Probe, string UserAgent, string Remote);
}
