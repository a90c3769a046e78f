using System.Diagnostics;
using System.Net;
using MeshProxy.Samples.App;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>
/// An upstream that sends its response headers and then waits before its first body bytes (a long-poll,
/// server-sent events): the caller must get the status and headers when the upstream sends them, as Envoy
/// passes them on, not together with the first event. Kestrel sends headers with the first body write, so a
/// proxy that only copies the body holds them for the whole wait.
/// </summary>
public sealed class ResponseHeadersTests
{
    private const int BodyDelayMs = 1000;

    // Well under the body delay, with room for a busy shared machine.
    private const int HeadersWithinMs = 600;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("HTTP")]
    [InlineData("HTTP2")]
    public async Task Headers_sent_ahead_of_a_late_body_reach_the_caller_at_once_inbound_and_outbound(string protocol)
    {
        await using var app = await StartAppAsync(protocol == "HTTP2" ? HttpProtocols.Http2 : HttpProtocols.Http1);
        await using var billing = await TestSidecar.StartAsync(new MeshYaml("billing", app.BoundPort(), protocol));
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1)
            .Service("billing", 80, protocol, billing.Inbound.Port)
            .Service("direct", 80, protocol, app.BoundPort()));
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };

        await AssertHeadersFirstAsync(client, billing.InboundUri, "billing", "inbound sidecar -> app");
        await AssertHeadersFirstAsync(client, store.OutboundUri, "direct", "outbound sidecar -> app");
        await AssertHeadersFirstAsync(client, store.OutboundUri, "billing", "outbound sidecar -> inbound sidecar -> app");
    }

    [Fact]
    public async Task Headers_sent_ahead_of_a_late_body_reach_the_caller_at_once_through_egress()
    {
        await using var app = await StartAppAsync(HttpProtocols.Http1);
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: meshproxy-system }
            spec: { outboundTrafficPolicy: { mode: ALLOW_ANY } }
            """));
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };

        await AssertHeadersFirstAsync(client, store.OutboundUri, $"localhost:{app.BoundPort()}", "outbound sidecar -> external host (plain HTTP egress)");
    }

    [Fact]
    public async Task A_503_that_is_retried_is_never_started_even_with_its_body_late()
    {
        var calls = 0;
        await using var backend = await Resilience.ChaosBackend.StartAsync(async context =>
        {
            if (Interlocked.Increment(ref calls) > 1)
            {
                await context.Response.WriteAsync("ok");
                return;
            }

            // Headers now, body late: exactly what makes the sidecar send headers early, were it not a retry.
            context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            await context.Response.StartAsync();
            await context.Response.Body.FlushAsync();
            await Task.Delay(BodyDelayMs);
            await context.Response.WriteAsync("busy");
        });
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("flaky", 80, "HTTP", backend.Port));
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };

        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(store.OutboundUri, "/"));
        request.Headers.Host = "flaky";
        using var response = await client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("ok", await response.Content.ReadAsStringAsync(Ct));
        Assert.Equal(2, backend.Received);
    }

    [Fact]
    public async Task A_body_that_arrived_with_its_headers_costs_no_allocation_and_leaves_the_response_unstarted()
    {
        await using var app = await StartAppAsync(HttpProtocols.Http1);
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false });
        for (var round = 0; round < 2; round++)
        {
            // Kestrel writes a small response's headers and body in one flush, so the body is buffered
            // in the client's connection when the headers are parsed: the common case of a proxied response.
            using var response = await client.GetAsync(new Uri($"http://127.0.0.1:{app.BoundPort()}/warm"), HttpCompletionOption.ResponseHeadersRead, Ct);
            var stream = await response.Content.ReadAsStreamAsync(Ct); // the forwarder's own call: not this code's cost
            var context = new DefaultHttpContext();

            var before = GC.GetAllocatedBytesForCurrentThread();
            var sent = EarlyResponseHeaders.SendIfBodyLateAsync(context, response, Ct);
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

            Assert.True(sent.IsCompletedSuccessfully, "completed synchronously");
            Assert.True(await sent, "the response is to be copied");
            Assert.False(context.Response.HasStarted);
            if (round == 1) // the first round pays for JIT
            {
                Assert.Equal(0, allocated);
            }

            using var reader = new StreamReader(stream);
            Assert.Equal("ok", await reader.ReadToEndAsync(Ct)); // the zero-byte read took nothing from the body
        }
    }

    private static async Task AssertHeadersFirstAsync(HttpClient client, Uri via, string host, string path)
    {
        // Warm the path first (connections, JIT on a cold process), so the time measured is the holding alone.
        using (var warm = new HttpRequestMessage(HttpMethod.Get, new Uri(via, "/warm")))
        {
            warm.Headers.Host = host;
            using var warmed = await client.SendAsync(warm, Ct);
            Assert.Equal("ok", await warmed.Content.ReadAsStringAsync(Ct));
        }

        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(via, "/events"));
        request.Headers.Host = host;
        var watch = Stopwatch.StartNew();
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        var headersAt = watch.ElapsedMilliseconds;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("held", Assert.Single(response.Headers.GetValues("x-app")));
        Assert.True(headersAt < HeadersWithinMs, $"{path}: headers arrived after {headersAt} ms, with the body {BodyDelayMs} ms late");

        Assert.Equal("data: one\n\n", await response.Content.ReadAsStringAsync(Ct));
        Assert.True(watch.ElapsedMilliseconds >= BodyDelayMs - 50, $"{path}: the app did not hold its body ({watch.ElapsedMilliseconds} ms)");
    }

    /// <summary>Kestrel app: on /events, status and headers flushed at once, the first (and only) event a second later.</summary>
    private static async Task<WebApplication> StartAppAsync(HttpProtocols protocols)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = protocols));
        var app = builder.Build();
        app.Run(async context =>
        {
            if (context.Request.Path == "/warm")
            {
                await context.Response.WriteAsync("ok");
                return;
            }

            context.Response.ContentType = "text/event-stream";
            context.Response.Headers["x-app"] = "held";
            await context.Response.StartAsync();
            await context.Response.Body.FlushAsync();
            await Task.Delay(BodyDelayMs);
            await context.Response.WriteAsync("data: one\n\n");
        });
        await app.StartAsync();
        return app;
    }
}
