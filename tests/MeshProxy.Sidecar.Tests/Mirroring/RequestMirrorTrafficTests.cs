using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using MeshProxy.Sidecar.Mirroring;
using MeshProxy.Sidecar.Tests.Infrastructure;
using MeshProxy.Sidecar.Tests.Resilience;
using MeshProxy.Testing;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace MeshProxy.Sidecar.Tests.Mirroring;

/// <summary>
/// Request mirroring over real sockets: a sidecar, a primary Kestrel backend (service billing) and a mirror one
/// (service billing-v2). The mirror gets a copy with Host "billing-shadow" and the same method, path, headers and
/// body; the caller's answer is the primary's whatever the mirror does (down, 500, hanging); the percentage draw is
/// the injected one; bodies over the limit and copies over the cap are skipped and counted.
/// </summary>
public sealed class RequestMirrorTrafficTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private sealed record Seen(string Method, string PathAndQuery, string Host, IReadOnlyDictionary<string, string> Headers, string Body);

    /// <summary>A Kestrel backend that records every request it gets (the body read whole), then does what the test says.</summary>
    private sealed class Recorder : IAsyncDisposable
    {
        private readonly ChaosBackend _backend;

        private Recorder(ChaosBackend backend) => _backend = backend;

        public ConcurrentQueue<Seen> Seen { get; } = new();

        public int Port => _backend.Port;

        public static async Task<Recorder> StartAsync(Func<HttpContext, Task> answer)
        {
            Recorder? recorder = null;
            var backend = await ChaosBackend.StartAsync(async context =>
            {
                var request = context.Request;
                using var reader = new StreamReader(request.Body, Encoding.UTF8);
                var body = await reader.ReadToEndAsync(context.RequestAborted);
                recorder!.Seen.Enqueue(new Seen(request.Method, request.Path + request.QueryString, request.Host.Value ?? "",
                    request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString()), body));
                await answer(context);
            });
            recorder = new Recorder(backend);
            return recorder;
        }

        public ValueTask DisposeAsync() => _backend.DisposeAsync();
    }

    private static MeshYaml Mesh(int primaryPort, int mirrorPort, string percentage = "") => new MeshYaml("store", 1)
        .Service("billing", 80, "HTTP", primaryPort)
        .Service("billing-v2", 80, "HTTP", mirrorPort)
        .Raw($$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: { name: billing, namespace: test }
        spec:
          hosts: [billing]
          http:
            - name: shadowed
              route: [{ destination: { host: billing } }]
              mirror: { host: billing-v2 }
              {{percentage}}
        """);

    private static Task Primary(HttpContext context) => context.Response.WriteAsync("primary:" + context.Request.Path);

    private static async Task<HttpResponseMessage> SendAsync(HttpClient client, TestSidecar sidecar, HttpMethod method, string pathAndQuery, HttpContent? content = null, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(method, new Uri(sidecar.OutboundUri, pathAndQuery)) { Content = content };
        request.Headers.Host = "billing";
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        return await client.SendAsync(request, Ct);
    }

    private static async Task<double> MirrorCountAsync(HttpClient client, TestSidecar sidecar, string result) =>
        (await Exposition.ScrapeAsync(client, sidecar.Stats)).Sum("meshproxy_mirror_requests_total", ("result", result));

    private static async Task EventuallyCountedAsync(HttpClient client, TestSidecar sidecar, string result, double expected)
    {
        var last = -1.0;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while ((last = await MirrorCountAsync(client, sidecar, result)) != expected)
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"meshproxy_mirror_requests_total{{result=\"{result}\"}} is {last}, expected {expected}");
            await Task.Delay(20, Ct);
        }
    }

    [Fact]
    public async Task The_mirror_gets_a_copy_with_the_shadow_host_and_the_same_method_path_headers_and_body()
    {
        await using var primary = await Recorder.StartAsync(Primary);
        await using var mirror = await Recorder.StartAsync(c => c.Response.WriteAsync("shadow answer the caller never sees"));
        await using var sidecar = await TestSidecar.StartAsync(Mesh(primary.Port, mirror.Port));
        using var client = new HttpClient();

        using var post = await SendAsync(client, sidecar, HttpMethod.Post, "/orders?id=7", new StringContent("{\"item\":42}", Encoding.UTF8, "application/json"), ("x-trace", "abc"));
        Assert.Equal(HttpStatusCode.OK, post.StatusCode);
        Assert.Equal("primary:/orders", await post.Content.ReadAsStringAsync(Ct));
        using var get = await SendAsync(client, sidecar, HttpMethod.Get, "/status", null, ("x-trace", "def"));
        Assert.Equal("primary:/status", await get.Content.ReadAsStringAsync(Ct));

        await Eventually.TrueAsync(() => mirror.Seen.Count == 2, "two copies at the mirror");
        var copies = mirror.Seen.OrderBy(s => s.PathAndQuery, StringComparer.Ordinal).ToList();
        var original = primary.Seen.Single(s => s.Method == "POST");
        var copy = copies.Single(s => s.Method == "POST");
        Assert.Equal("/orders?id=7", copy.PathAndQuery);
        Assert.Equal("billing-shadow", copy.Host);
        Assert.Equal("billing", original.Host);
        Assert.Equal("{\"item\":42}", copy.Body);
        Assert.Equal(original.Body, copy.Body);
        Assert.Equal("abc", copy.Headers["x-trace"]);
        Assert.Equal("application/json; charset=utf-8", copy.Headers["content-type"]);
        Assert.Equal("11", copy.Headers["content-length"]);
        Assert.Equal(original.Headers["x-request-id"], copy.Headers["x-request-id"]); // the same request, seen twice
        var bodiless = copies.Single(s => s.Method == "GET");
        Assert.Equal(("/status", "billing-shadow", "def", ""), (bodiless.PathAndQuery, bodiless.Host, bodiless.Headers["x-trace"], bodiless.Body));
        await EventuallyCountedAsync(client, sidecar, "mirrored", 2);

        // /config_dump shows the rule's mirror.
        using var dump = JsonDocument.Parse(await client.GetStringAsync($"http://{sidecar.Admin}/config_dump", Ct));
        var text = dump.RootElement.ToString();
        Assert.Contains("outbound|80||billing-v2.test.svc.cluster.local", text, StringComparison.Ordinal);
    }

    public enum MirrorFault
    {
        Down,
        Error500,
        Hangs,
    }

    [Theory]
    [InlineData(MirrorFault.Down, "failed")]
    [InlineData(MirrorFault.Error500, "mirrored")]
    [InlineData(MirrorFault.Hangs, "failed")]
    public async Task The_callers_answer_is_the_primarys_whatever_the_mirror_does(MirrorFault fault, string counted)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var primary = await Recorder.StartAsync(Primary);
        await using var mirror = await Recorder.StartAsync(async c =>
        {
            if (fault == MirrorFault.Hangs)
            {
                await release.Task.WaitAsync(c.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            c.Response.StatusCode = 500;
        });
        var mirrorPort = fault == MirrorFault.Down ? ClosedPort.Next() : mirror.Port;

        // The copy's own timeout is long enough that a primary waiting on it would be seen: the caller's answer must
        // come while the hanging mirror still holds the copy.
        var options = new MirrorOptions { Timeout = TimeSpan.FromSeconds(3) };
        await using var sidecar = await TestSidecar.StartAsync(Mesh(primary.Port, mirrorPort), s => s.AddSingleton(options));
        using var client = new HttpClient();

        for (var i = 0; i < 3; i++)
        {
            using var response = await SendAsync(client, sidecar, HttpMethod.Post, $"/pay/{i}", new StringContent("amount=5"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal($"primary:/pay/{i}", await response.Content.ReadAsStringAsync(Ct));
            if (fault == MirrorFault.Hangs)
            {
                await Eventually.TrueAsync(() => mirror.Seen.Count == i + 1, "the copy at the hanging mirror");
                Assert.False(release.Task.IsCompleted); // the mirror is still holding every copy
            }
        }

        Assert.Equal(3, primary.Seen.Count);
        await EventuallyCountedAsync(client, sidecar, counted, 3);
        release.TrySetResult();
    }

    [Fact]
    public async Task The_injected_draw_decides_which_requests_are_copied_and_percentage_0_copies_none()
    {
        var draws = new ConcurrentQueue<double>([10, 60, 49.9, 50, 0]);
        var options = new MirrorOptions { Draw = () => draws.TryDequeue(out var d) ? d : throw new InvalidOperationException("no draw left") };
        await using var primary = await Recorder.StartAsync(Primary);
        await using var mirror = await Recorder.StartAsync(c => Task.CompletedTask);
        await using var sidecar = await TestSidecar.StartAsync(Mesh(primary.Port, mirror.Port, "mirrorPercentage: { value: 50 }"), s => s.AddSingleton(options));
        using var client = new HttpClient();

        for (var i = 1; i <= 5; i++)
        {
            using var response = await SendAsync(client, sidecar, HttpMethod.Get, $"/{i}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Below 50: 10, 49.9 and 0 (requests 1, 3, 5); 60 and 50 are not.
        await EventuallyCountedAsync(client, sidecar, "mirrored", 3);
        Assert.Equal(["/1", "/3", "/5"], mirror.Seen.Select(s => s.PathAndQuery).Order(StringComparer.Ordinal));
        Assert.Empty(draws);
    }

    [Fact]
    public async Task Percentage_0_copies_nothing_even_on_a_zero_draw()
    {
        var drawn = 0;
        var options = new MirrorOptions { Draw = () => { Interlocked.Increment(ref drawn); return 0; } };
        await using var primary = await Recorder.StartAsync(Primary);
        await using var mirror = await Recorder.StartAsync(c => Task.CompletedTask);
        await using var sidecar = await TestSidecar.StartAsync(Mesh(primary.Port, mirror.Port, "mirrorPercentage: { value: 0 }"), s => s.AddSingleton(options));
        using var client = new HttpClient();

        for (var i = 0; i < 10; i++)
        {
            using var response = await SendAsync(client, sidecar, HttpMethod.Post, $"/{i}", new StringContent("x"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(10, drawn); // every request was drawn for, none won
        var samples = await Exposition.ScrapeAsync(client, sidecar.Stats);
        Assert.Equal(0, samples.Sum("meshproxy_mirror_requests_total"));
        Assert.Empty(mirror.Seen);
        Assert.Equal(10, primary.Seen.Count);
    }

    [Fact]
    public async Task A_body_over_the_limit_is_not_copied_and_is_counted_while_the_primary_gets_it_whole()
    {
        var options = new MirrorOptions { BodyLimit = 16 };
        await using var primary = await Recorder.StartAsync(Primary);
        await using var mirror = await Recorder.StartAsync(c => Task.CompletedTask);
        await using var sidecar = await TestSidecar.StartAsync(Mesh(primary.Port, mirror.Port), s => s.AddSingleton(options));
        using var client = new HttpClient();
        var big = new string('b', 100);

        // Declared over the limit (Content-Length), and undeclared (chunked) running over it as the primary reads.
        using var declared = await SendAsync(client, sidecar, HttpMethod.Post, "/declared", new StringContent(big));
        using var chunked = await SendAsync(client, sidecar, HttpMethod.Post, "/chunked", new StreamContent(new MemoryStream(Encoding.ASCII.GetBytes(big))));
        // Within the limit, undeclared: copied whole.
        using var small = await SendAsync(client, sidecar, HttpMethod.Post, "/small", new StreamContent(new MemoryStream(Encoding.ASCII.GetBytes("sixteen bytes..."))));

        Assert.All([declared, chunked, small], r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal((big, big, "sixteen bytes..."), (Body("/declared"), Body("/chunked"), Body("/small")));
        await EventuallyCountedAsync(client, sidecar, "skipped_body", 2);
        await EventuallyCountedAsync(client, sidecar, "mirrored", 1);
        var copy = Assert.Single(mirror.Seen);
        Assert.Equal(("/small", "sixteen bytes..."), (copy.PathAndQuery, copy.Body));

        string Body(string path) => primary.Seen.Single(s => s.PathAndQuery == path).Body;
    }

    [Fact]
    public async Task Over_the_cap_on_copies_in_flight_a_copy_is_skipped_and_counted()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var options = new MirrorOptions { MaxConcurrent = 1, Timeout = TimeSpan.FromMinutes(1) };
        await using var primary = await Recorder.StartAsync(Primary);
        await using var mirror = await Recorder.StartAsync(c => release.Task.WaitAsync(c.RequestAborted));
        await using var sidecar = await TestSidecar.StartAsync(Mesh(primary.Port, mirror.Port), s => s.AddSingleton(options));
        using var client = new HttpClient();

        using var first = await SendAsync(client, sidecar, HttpMethod.Get, "/first");
        await Eventually.TrueAsync(() => mirror.Seen.Count == 1, "the first copy held at the mirror");
        using var second = await SendAsync(client, sidecar, HttpMethod.Get, "/second");

        Assert.Equal(("primary:/first", "primary:/second"), (await first.Content.ReadAsStringAsync(Ct), await second.Content.ReadAsStringAsync(Ct)));
        await EventuallyCountedAsync(client, sidecar, "skipped_concurrency", 1);
        release.SetResult();
        await EventuallyCountedAsync(client, sidecar, "mirrored", 1);
        Assert.Equal("/first", Assert.Single(mirror.Seen).PathAndQuery);

        // The slot is free again: the next copy goes.
        using var third = await SendAsync(client, sidecar, HttpMethod.Get, "/third");
        await EventuallyCountedAsync(client, sidecar, "mirrored", 2);
    }
}
