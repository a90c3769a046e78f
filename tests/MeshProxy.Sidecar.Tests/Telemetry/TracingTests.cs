using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using MeshProxy.Sidecar.Tests.Infrastructure;
using MeshProxy.Sidecar.Tests.Telemetry.Otlp;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>
/// Spans from a request through two sidecars, exported over OTLP/HTTP to a receiver in this process.
/// The sidecars run as separate processes: an OpenTelemetry tracer provider listens to every
/// ActivitySource of its name in its process, so two in one process would each export both's spans.
/// </summary>
public sealed partial class TracingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task W3C_spans_link_caller_client_span_server_span_and_app()
    {
        await using var mesh = await ProcessMesh.StartAsync("w3c");

        // A: the caller's sampled trace is continued.
        var traceA = RandomHex(32);
        var callerSpan = RandomHex(16);
        var appA = await mesh.GetHelloAsync(("traceparent", $"00-{traceA}-{callerSpan}-01"));

        // B: the caller decided not to sample: no spans, and its header reaches the app untouched.
        var traceB = RandomHex(32);
        var unsampled = $"00-{traceB}-{RandomHex(16)}-00";
        var appB = await mesh.GetHelloAsync(("traceparent", unsampled));
        Assert.Equal(unsampled, Header(appB, "traceparent"));

        // C: no context at all: the outbound sidecar starts the trace (sampling 100%).
        var appC = await mesh.GetHelloAsync();

        var spansA = await mesh.Receiver.WaitForTraceAsync(traceA, 2, TimeSpan.FromSeconds(20));
        var client = Assert.Single(spansA, s => s.Span.Kind == Span.Types.SpanKind.Client);
        var server = Assert.Single(spansA, s => s.Span.Kind == Span.Types.SpanKind.Server);
        Assert.Equal(callerSpan, OtlpReceiver.Hex(client.Span.ParentSpanId));
        Assert.Equal(OtlpReceiver.Hex(client.Span.SpanId), OtlpReceiver.Hex(server.Span.ParentSpanId));
        Assert.Equal($"00-{traceA}-{OtlpReceiver.Hex(server.Span.SpanId)}-01", Header(appA, "traceparent"));

        Assert.Equal("store", OtlpReceiver.Attribute(client.Resource, "service.name"));
        Assert.Equal("billing", OtlpReceiver.Attribute(server.Resource, "service.name"));
        Assert.Equal("GET", client.Span.Name);
        Assert.Equal("GET", OtlpReceiver.Attribute(client.Span, "http.request.method"));
        Assert.Equal("/hello", OtlpReceiver.Attribute(client.Span, "url.path"));
        Assert.Equal("billing", OtlpReceiver.Attribute(client.Span, "server.address"));
        Assert.Equal("1.1", OtlpReceiver.Attribute(client.Span, "network.protocol.version"));
        Assert.Equal("200", OtlpReceiver.Attribute(client.Span, "http.response.status_code"));
        Assert.Equal("-", OtlpReceiver.Attribute(client.Span, "meshproxy.response_flags"));
        Assert.Equal("outbound|80||billing.test.svc.cluster.local", OtlpReceiver.Attribute(client.Span, "meshproxy.upstream_cluster"));
        Assert.Equal("unknown", OtlpReceiver.Attribute(client.Span, "meshproxy.peer.principal"));
        Assert.Null(OtlpReceiver.Attribute(client.Span, "http.request.resend_count")); // sent once: absent, not 0
        Assert.Equal($"inbound|{mesh.App.Port}||", OtlpReceiver.Attribute(server.Span, "meshproxy.upstream_cluster"));
        Assert.Equal("200", OtlpReceiver.Attribute(server.Span, "http.response.status_code"));
        Assert.Equal(Status.Types.StatusCode.Unset, server.Span.Status?.Code ?? Status.Types.StatusCode.Unset);
        Assert.True(client.Span.StartTimeUnixNano <= server.Span.StartTimeUnixNano && server.Span.EndTimeUnixNano <= client.Span.EndTimeUnixNano);

        var traceC = TraceParentMatch().Match(Header(appC, "traceparent")!).Groups["trace"].Value;
        var spansC = await mesh.Receiver.WaitForTraceAsync(traceC, 2, TimeSpan.FromSeconds(20));
        var root = Assert.Single(spansC, s => s.Span.Kind == Span.Types.SpanKind.Client);
        Assert.True(root.Span.ParentSpanId.IsEmpty, "the outbound span of an untraced request is a root");
        Assert.Equal(OtlpReceiver.Hex(root.Span.SpanId), OtlpReceiver.Hex(Assert.Single(spansC, s => s.Span.Kind == Span.Types.SpanKind.Server).Span.ParentSpanId));

        // A and C have arrived, so B's spans would have too: there are none.
        Assert.DoesNotContain(mesh.Receiver.Spans, s => OtlpReceiver.Hex(s.Span.TraceId) == traceB);
    }

    [Fact]
    public async Task A_failed_request_is_an_error_span_with_its_response_flag()
    {
        await using var mesh = await ProcessMesh.StartAsync("w3c");
        var trace = RandomHex(32);
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(mesh.StoreOutbound, "/"));
        request.Headers.Host = "refusing";
        request.Headers.Add("traceparent", $"00-{trace}-{RandomHex(16)}-01");
        using var response = await mesh.Client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);

        var span = Assert.Single(await mesh.Receiver.WaitForTraceAsync(trace, 1, TimeSpan.FromSeconds(20))).Span;
        Assert.Equal("UF,URX", OtlpReceiver.Attribute(span, "meshproxy.response_flags"));
        Assert.Equal("503", OtlpReceiver.Attribute(span, "http.response.status_code"));
        Assert.Equal(Status.Types.StatusCode.Error, span.Status.Code);
        Assert.Equal("2", OtlpReceiver.Attribute(span, "http.request.resend_count")); // Istio's default: 2 retries on connect-failure
    }

    [Fact]
    public async Task A_retried_request_carries_its_resend_count_on_the_client_span()
    {
        await using var mesh = await ProcessMesh.StartAsync("w3c");
        var trace = RandomHex(32);
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(mesh.StoreOutbound, "/"));
        request.Headers.Host = "flaky";
        request.Headers.Add("traceparent", $"00-{trace}-{RandomHex(16)}-01");
        using var response = await mesh.Client.SendAsync(request, Ct);

        // The first attempt got 503 (retried by default), the second 200: one resend.
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, mesh.Flaky.Received);
        var span = Assert.Single(await mesh.Receiver.WaitForTraceAsync(trace, 1, TimeSpan.FromSeconds(20))).Span;
        Assert.Equal(Span.Types.SpanKind.Client, span.Kind);
        Assert.Equal("1", OtlpReceiver.Attribute(span, "http.request.resend_count"));
        Assert.Equal("200", OtlpReceiver.Attribute(span, "http.response.status_code"));
        Assert.Equal("-", OtlpReceiver.Attribute(span, "meshproxy.response_flags"));
    }

    [Theory]
    [InlineData("b3")]
    [InlineData("b3multi")]
    public async Task B3_context_is_continued_and_passed_on_in_the_same_format(string propagation)
    {
        await using var mesh = await ProcessMesh.StartAsync(propagation);
        var trace64 = RandomHex(16); // B3 allows 64-bit trace ids; the span's trace id is it left-padded to 128 bits
        var callerSpan = RandomHex(16);
        (string, string)[] headers = propagation == "b3"
            ? [("b3", $"{trace64}-{callerSpan}-1")]
            : [("X-B3-TraceId", trace64), ("X-B3-SpanId", callerSpan), ("X-B3-Sampled", "1")];
        var app = await mesh.GetHelloAsync(headers);

        var spans = await mesh.Receiver.WaitForTraceAsync("0000000000000000" + trace64, 2, TimeSpan.FromSeconds(20));
        var client = Assert.Single(spans, s => s.Span.Kind == Span.Types.SpanKind.Client).Span;
        var server = Assert.Single(spans, s => s.Span.Kind == Span.Types.SpanKind.Server).Span;
        Assert.Equal(callerSpan, OtlpReceiver.Hex(client.ParentSpanId));
        Assert.Equal(OtlpReceiver.Hex(client.SpanId), OtlpReceiver.Hex(server.ParentSpanId));

        var serverSpan = OtlpReceiver.Hex(server.SpanId);
        var clientSpan = OtlpReceiver.Hex(client.SpanId);
        if (propagation == "b3")
        {
            Assert.Equal($"0000000000000000{trace64}-{serverSpan}-1-{clientSpan}", Header(app, "b3"));
        }
        else
        {
            Assert.Equal("0000000000000000" + trace64, Header(app, "x-b3-traceid"));
            Assert.Equal(serverSpan, Header(app, "x-b3-spanid"));
            Assert.Equal(clientSpan, Header(app, "x-b3-parentspanid"));
            Assert.Equal("1", Header(app, "x-b3-sampled"));
        }

        Assert.Null(Header(app, "traceparent")); // one format, the configured one
    }

    private static string RandomHex(int length) => Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(length / 2));

    private static string? Header(JsonElement app, string name) =>
        app.GetProperty("headers").TryGetProperty(name, out var value) ? value.GetString() : null;

    [GeneratedRegex("^00-(?<trace>[0-9a-f]{32})-[0-9a-f]{16}-01$")]
    private static partial Regex TraceParentMatch();

    /// <summary>OTLP receiver, billing app (in process), and the store and billing sidecars as processes with tracing at 100%.</summary>
    private sealed partial class ProcessMesh : IAsyncDisposable
    {
        private readonly List<IAsyncDisposable> _parts = [];

        public OtlpReceiver Receiver { get; private set; } = null!;

        public Backend App { get; private set; } = null!;

        /// <summary>Answers its first request 503, every later one 200.</summary>
        public Resilience.ChaosBackend Flaky { get; private set; } = null!;

        public Uri StoreOutbound { get; private set; } = null!;

        public HttpClient Client { get; } = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };

        public static async Task<ProcessMesh> StartAsync(string propagation)
        {
            var mesh = new ProcessMesh();
            try
            {
                mesh.Receiver = await OtlpReceiver.StartAsync();
                mesh._parts.Add(mesh.Receiver);
                mesh.App = await Backend.StartAsync("billing");
                mesh._parts.Add(mesh.App);
                var answered = 0;
                mesh.Flaky = await Resilience.ChaosBackend.StartAsync(context =>
                {
                    if (Interlocked.Increment(ref answered) == 1)
                    {
                        context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                        return Task.CompletedTask;
                    }

                    return Resilience.ChaosBackend.Ok(context);
                });
                mesh._parts.Add(mesh.Flaky);
                var tracing = $"  tracing: {{ sampling: 100, propagation: {propagation}, otlpEndpoint: '{mesh.Receiver.Endpoint}' }}";
                var billing = await mesh.StartSidecarAsync("billing", new MeshYaml("billing", mesh.App.Port).Raw(TelemetryMesh.MeshConfig("/dev/null", tracing: tracing)));
                var store = await mesh.StartSidecarAsync("store", new MeshYaml("store", 1)
                    .Service("billing", 80, "HTTP", billing.Inbound)
                    .Service("refusing", 80, "HTTP", ClosedPort.Next())
                    .Service("flaky", 80, "HTTP", mesh.Flaky.Port)
                    .Raw(TelemetryMesh.MeshConfig("/dev/null", tracing: tracing)));
                mesh.StoreOutbound = new Uri($"http://127.0.0.1:{store.Outbound}");
                return mesh;
            }
            catch
            {
                await mesh.DisposeAsync();
                throw;
            }
        }

        public async Task<JsonElement> GetHelloAsync(params (string Name, string Value)[] headers)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(StoreOutbound, "/hello"));
            request.Headers.Host = "billing";
            foreach (var (name, value) in headers)
            {
                request.Headers.Add(name, value);
            }

            using var response = await Client.SendAsync(request, Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        }

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            for (var i = _parts.Count - 1; i >= 0; i--)
            {
                await _parts[i].DisposeAsync();
            }
        }

        private async Task<(int Outbound, int Inbound)> StartSidecarAsync(string name, MeshYaml yaml)
        {
            var dir = Directory.CreateTempSubdirectory("meshproxy-trace-" + name);
            var path = yaml.WriteTo(dir.FullName);
            var command = RepoPaths.Sidecar("--config", path);
            var process = ExternalProcess.Start(command[0], command[1..]);
            _parts.Add(process);
            var outbound = await process.WaitForLineAsync("outbound listener on", TimeSpan.FromSeconds(30));
            var inbound = await process.WaitForLineAsync("inbound listener on", TimeSpan.FromSeconds(30));
            return (Port(outbound), Port(inbound));
        }

        private static int Port(string line) => int.Parse(ListenerPort().Match(line).Groups["port"].Value, System.Globalization.CultureInfo.InvariantCulture);

        [GeneratedRegex("listener on [^ ]*:(?<port>[0-9]+)")]
        private static partial Regex ListenerPort();
    }
}
