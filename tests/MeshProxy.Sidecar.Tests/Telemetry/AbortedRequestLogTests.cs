using MeshProxy.Sidecar.Telemetry;
using MeshProxy.Sidecar.Tests.Infrastructure;
using MeshProxy.Sidecar.Tests.Resilience;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>
/// Issue 19 item 7 (security review): a request its caller aborts wrote two warning lines (~1.5 KB), so any
/// client could make the sidecar write logs at will. Now each abort is a Debug line and a count, and the
/// aborts of an interval make one summary line at its end, on the injected clock.
/// </summary>
public sealed class AbortedRequestLogTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Aborted_requests_write_no_warning_and_one_summary_line_per_interval()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var log = new LogCapture();
        await using var backend = await ChaosBackend.StartAsync(async context =>
        {
            // Holds the request until the sidecar gives up on it (its caller went away).
            await Task.Delay(Timeout.Infinite, context.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
        });
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("client", ClosedPort.Next()).Service("svc", 80, "HTTP", backend.Port), services =>
        {
            log.Register(services);
            services.AddSingleton(sp => new AbortedRequests(time, sp.GetRequiredService<ILogger<AbortedRequests>>()));
        });
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false });

        await AbortAsync(client, sidecar, backend, 5, total: 0);
        var warnings = log.Lines.Where(l => l.Level >= LogLevel.Warning).Select(l => l.Message).ToList();
        Assert.True(warnings.Count == 0, $"{warnings.Count} warning lines, {warnings.Sum(w => w.Length)} characters, for 5 aborts:\n" + string.Join("\n", warnings));
        Assert.Empty(log.WithEvent(AbortedRequests.SummaryEvent));

        time.Advance(AbortedRequests.DefaultInterval);
        await Eventually.TrueAsync(() => log.WithEvent(AbortedRequests.SummaryEvent).Count > 0, "the first summary line");
        var summary = Assert.Single(log.WithEvent(AbortedRequests.SummaryEvent));
        Assert.Contains("5 requests", summary, StringComparison.Ordinal);
        Assert.Contains("outbound", summary, StringComparison.Ordinal);

        // A quiet interval writes nothing; the next aborts make the next summary.
        time.Advance(AbortedRequests.DefaultInterval);
        await AbortAsync(client, sidecar, backend, 2, total: 5);
        time.Advance(AbortedRequests.DefaultInterval);
        await Eventually.TrueAsync(() => log.WithEvent(AbortedRequests.SummaryEvent).Count == 2, "the second summary line");
        Assert.Contains("2 requests", log.WithEvent(AbortedRequests.SummaryEvent)[1], StringComparison.Ordinal);
        Assert.DoesNotContain(log.Lines, l => l.Level >= LogLevel.Warning);

        var metrics = await Exposition.ScrapeAsync(client, sidecar.Stats);
        Assert.Equal(7, metrics.Sum("meshproxy_downstream_aborted_total", ("direction", "outbound")));
        Assert.Equal(7, metrics.Sum("istio_requests_total", ("response_flags", "DC")));
    }

    /// <summary>Sends <paramref name="count"/> requests, each cancelled by the client once the backend holds it.</summary>
    private static async Task AbortAsync(HttpClient client, TestSidecar sidecar, ChaosBackend backend, int count, int total)
    {
        for (var i = 0; i < count; i++)
        {
            var received = backend.Received;
            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, "/held"));
            request.Headers.Host = "svc";
            var send = client.SendAsync(request, cancel.Token);
            await Eventually.TrueAsync(() => backend.Received > received, "the backend holding the request");
            cancel.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send);
        }

        // The sidecar records an abort once its attempt has ended: wait until the last one is counted.
        var target = total + count;
        for (var i = 0; i < 500 && (await Exposition.ScrapeAsync(client, sidecar.Stats)).Sum("meshproxy_downstream_aborted_total") < target; i++)
        {
            await Task.Delay(20, Ct);
        }
    }
}
