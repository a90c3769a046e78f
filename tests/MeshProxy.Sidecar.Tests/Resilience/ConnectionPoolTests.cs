using System.Diagnostics;
using System.Net;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>DestinationPolicy connectionPool on real sockets: per-destination idle timeout, the pending queue, HTTP/2 stream capacity.</summary>
public sealed class ConnectionPoolTests
{
    private static string Policy(string host, string connectionPool) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: DestinationPolicy
        metadata: { name: {{host}}, namespace: test }
        spec:
          host: {{host}}
          connectionPool: {{connectionPool}}
        """;

    private static HttpClient Client() =>
        new(new SocketsHttpHandler { UseProxy = false, MaxConnectionsPerServer = 64 }) { Timeout = TimeSpan.FromSeconds(15) };

    private static async Task<(HttpStatusCode Status, string Flags, long Ms)> SendAsync(HttpClient client, TestSidecar sidecar, string host)
    {
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, "/x"));
        request.Headers.Host = host;
        using var response = await client.SendAsync(request);
        await response.Content.ReadAsStringAsync();
        var flags = response.Headers.TryGetValues("x-meshproxy-response-flags", out var v) ? string.Join(",", v) : "";
        return (response.StatusCode, flags, clock.ElapsedMilliseconds);
    }

    [Fact]
    public async Task Idle_timeout_is_per_destination()
    {
        await using var quick = RawHttpApp.Ok(TimeSpan.Zero);
        await using var lasting = RawHttpApp.Ok(TimeSpan.Zero);
        var yaml = new MeshYaml("client", ClosedPort.Next())
            .Service("quick", 80, "HTTP", quick.Port)
            .Service("lasting", 80, "HTTP", lasting.Port)
            .Raw(Policy("quick", "{ http: { idleTimeout: 1s } }"))
            .Raw(Policy("lasting", "{ http: { idleTimeout: 60s } }"));
        await using var sidecar = await TestSidecar.StartAsync(yaml);
        using var client = Client();

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(client, sidecar, "quick")).Status);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(client, sidecar, "lasting")).Status);
        var idleSince = quick.NowMs;
        Assert.Equal(1, quick.Open);
        Assert.Equal(1, lasting.Open);

        var clock = Stopwatch.StartNew();
        while (quick.Open > 0 && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }

        // Closed by the proxy after its 1 s (the pool scans idle connections every second or so).
        Assert.Equal(0, quick.Open);
        Assert.InRange(quick.LastClosedMs - idleSince, 900, 4000);
        Assert.Equal(1, lasting.Open);
        Assert.Equal(-1, lasting.LastClosedMs);

        // And the kept connection is the one reused.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(client, sidecar, "lasting")).Status);
        Assert.Equal(1, lasting.Accepted);
    }

    [Fact]
    public async Task Over_max_connections_requests_wait_as_pending_and_only_pending_overflow_answers_503_UO()
    {
        await using var slow = RawHttpApp.Ok(TimeSpan.FromMilliseconds(400));
        var yaml = new MeshYaml("client", ClosedPort.Next())
            .Service("svc", 80, "HTTP", slow.Port)
            .Raw(Policy("svc", "{ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 2 } }"));
        await using var sidecar = await TestSidecar.StartAsync(yaml);
        using var client = Client();

        // One served, two pending: all three succeed, one after the other on the one connection.
        var three = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => SendAsync(client, sidecar, "svc")));
        Assert.All(three, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.InRange(three.Max(r => r.Ms), 1100, 5000);

        // Six at once: one served, two pending, three refused at once.
        var six = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => SendAsync(client, sidecar, "svc")));
        Assert.Equal(3, six.Count(r => r.Status == HttpStatusCode.OK));
        var refused = six.Where(r => r.Status != HttpStatusCode.OK).ToList();
        Assert.Equal(3, refused.Count);
        Assert.All(refused, r =>
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, r.Status);
            Assert.Equal("UO", r.Flags); // at once: AdmissionTests proves it on a fake clock
        });

        Assert.Equal(1, slow.MaxOpen);
        Assert.Equal(1, slow.Accepted);
    }

    [Fact]
    public async Task A_pending_request_waits_no_longer_than_the_connect_timeout()
    {
        await using var slow = RawHttpApp.Ok(TimeSpan.FromMilliseconds(1500));
        var yaml = new MeshYaml("client", ClosedPort.Next())
            .Service("svc", 80, "HTTP", slow.Port)
            .Raw(Policy("svc", "{ tcp: { maxConnections: 1, connectTimeout: 300ms } }"));
        await using var sidecar = await TestSidecar.StartAsync(yaml);
        using var client = Client();

        var first = SendAsync(client, sidecar, "svc");
        while (slow.Accepted == 0)
        {
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        var second = await SendAsync(client, sidecar, "svc");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, second.Status);
        Assert.Equal("UO", second.Flags);
        Assert.True(second.Ms < 10_000, $"{second.Ms} ms"); // smoke: the wait's length is AdmissionTests' (fake clock, exact)
        Assert.Equal(HttpStatusCode.OK, (await first).Status);
        Assert.Equal(1, slow.MaxOpen);
    }

    [Fact]
    public async Task On_http2_requests_beyond_the_stream_capacity_are_pending()
    {
        await using var app = new TwoStreamBackend(_ => Task.Delay(400));
        var port = await app.StartAsync();

        var yaml = new MeshYaml("client", ClosedPort.Next())
            .Service("svc", 80, "HTTP2", port)
            .Raw(Policy("svc", "{ tcp: { maxConnections: 1 }, http: { http2MaxRequests: 2, http1MaxPendingRequests: 1 } }"));
        await using var sidecar = await TestSidecar.StartAsync(yaml);
        using var client = Client();

        // Two streams served, one pending: all three succeed.
        var three = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => SendAsync(client, sidecar, "svc")));
        Assert.All(three, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.InRange(three.Max(r => r.Ms), 750, 5000);

        // Five at once: two served, one pending, two refused at once.
        var five = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => SendAsync(client, sidecar, "svc")));
        Assert.Equal(3, five.Count(r => r.Status == HttpStatusCode.OK));
        Assert.All(five.Where(r => r.Status != HttpStatusCode.OK), r =>
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, r.Status);
            Assert.Equal("UO", r.Flags); // at once: AdmissionTests proves it on a fake clock
        });

        Assert.Equal(2, app.MaxActive);
        Assert.Single(app.Connections);
        await app.StopAsync();
    }

    [Fact]
    public async Task On_http2_with_max_connections_requests_beyond_the_servers_stream_limit_are_pending()
    {
        // No http2MaxRequests: the capacity comes from maxConnections (1) x the stream limit the server
        // advertises in its SETTINGS (2). Beyond it requests are pending, bounded by http1MaxPendingRequests,
        // instead of waiting unbounded in SocketsHttpHandler's own queue.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var app = new TwoStreamBackend(context => context.Request.Path == "/x" ? release.Task : Task.CompletedTask);
        var port = await app.StartAsync();

        var yaml = new MeshYaml("client", ClosedPort.Next())
            .Service("svc", 80, "HTTP2", port)
            .Raw(Policy("svc", "{ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 2 } }"));
        await using var sidecar = await TestSidecar.StartAsync(yaml);
        using var client = Client();
        var state = sidecar.Store.Current.Clusters().Single(c => c.Name.Contains("svc", StringComparison.Ordinal)).State;

        // Until a connection has read the server's SETTINGS the limit is unknown; one request teaches it.
        using (var warm = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, "/warm")))
        {
            warm.Headers.Host = "svc";
            using var response = await client.SendAsync(warm, TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(2, state.ServerStreams);

        // Four held: two served (the server's two streams), two pending in the sidecar.
        var held = Enumerable.Range(0, 4).Select(_ => SendAsync(client, sidecar, "svc")).ToArray();
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while ((app.Active < 2 || state.Serving.Waiting < 2) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }

        Assert.Equal(2, state.Serving.Waiting);

        // The fifth overflows the pending queue: 503 UO at once (without the server's limit it would be
        // admitted and wait in the handler's queue until a stream frees up).
        var fifth = SendAsync(client, sidecar, "svc");
        Assert.Same(fifth, await Task.WhenAny(fifth, Task.Delay(3000, TestContext.Current.CancellationToken)));
        var refused = await fifth;
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.Status);
        Assert.Equal("UO", refused.Flags);
        // "At once" here is "before any held request is let go" (the wait above); the refusal's timing is AdmissionTests'.

        release.SetResult();
        var done = await Task.WhenAll(held);
        Assert.All(done, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.Equal(2, app.MaxActive);
        Assert.Single(app.Connections);
        await app.StopAsync();
    }

    /// <summary>
    /// An HTTP/2 backend that allows two streams per connection and records the connections its requests
    /// came on and the most it served at once; a request is answered once <c>hold</c>'s task completes.
    /// </summary>
    private sealed class TwoStreamBackend : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly HashSet<string> _connections = [];
        private int _active;
        private int _maxActive;

        public TwoStreamBackend(Func<HttpContext, Task> hold)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.Limits.Http2.MaxStreamsPerConnection = 2;
                k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2);
            });
            _app = builder.Build();
            _app.Run(async context =>
            {
                lock (_connections)
                {
                    _connections.Add(context.Connection.Id);
                    _maxActive = Math.Max(_maxActive, ++_active);
                }

                await hold(context);
                lock (_connections)
                {
                    _active--;
                }

                await context.Response.WriteAsync("ok");
            });
        }

        public int Active => Volatile.Read(ref _active);

        public int MaxActive => Volatile.Read(ref _maxActive);

        /// <summary>Read once the requests are done (it is not locked for the reader).</summary>
        public IReadOnlyCollection<string> Connections => _connections;

        /// <summary>Starts listening; returns the port.</summary>
        public async Task<int> StartAsync()
        {
            await _app.StartAsync(TestContext.Current.CancellationToken);
            return new Uri(_app.Urls.First()).Port;
        }

        public Task StopAsync() => _app.StopAsync(TestContext.Current.CancellationToken);

        public ValueTask DisposeAsync() => _app.DisposeAsync();
    }
}
