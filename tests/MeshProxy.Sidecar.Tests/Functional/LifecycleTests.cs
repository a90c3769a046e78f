using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>The sidecar as a real process: start-up errors, SIGTERM drain under load, /quitquitquit.</summary>
public sealed class LifecycleTests
{
    private const int SigTerm = 15;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task An_invalid_file_at_start_up_exits_non_zero_naming_file_line_field_and_reason()
    {
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
        var yaml = new MeshYaml("store", 8080).ToString().Replace("drainDuration: 1s", "drainDuration: soon", StringComparison.Ordinal);
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, "mesh.yaml");
        await File.WriteAllTextAsync(path, yaml, Ct);
        var line = yaml.Split('\n').ToList().FindIndex(l => l.Contains("soon", StringComparison.Ordinal)) + 1;

        await using var process = SidecarProcess.Launch(path);
        Assert.Equal(1, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"{path}:{line}: spec.drainDuration: 'soon' is not a duration", process.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_file_and_unknown_arguments_are_refused_clearly()
    {
        await using var missing = SidecarProcess.Launch("/nonexistent/mesh.yaml");
        Assert.Equal(1, await missing.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("does not exist", missing.Output, StringComparison.Ordinal);

        var command = RepoPaths.Sidecar("--frobnicate");
        await using var unknown = ExternalProcess.Start(command[0], command[1..]);
        Assert.Equal(2, await unknown.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("unknown argument '--frobnicate'", unknown.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sigterm_under_load_fails_no_request_in_flight_and_outbound_serves_through_the_drain()
    {
        await using var app = await Backend.StartAsync("billing");
        var drain = TimeSpan.FromSeconds(3);
        await using var sidecar = await SidecarProcess.StartAsync(
            new MeshYaml("billing", app.Port, drain: "3s").Service("billing", 80, "HTTP", app.Port));
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };

        // Slow inbound requests already in flight when the signal comes.
        var inFlight = Enumerable.Range(0, 10)
            .Select(_ => client.GetAsync($"http://{sidecar.Inbound}/slow?ms=1500", Ct))
            .ToList();

        // The app's own outbound calls, back to back, on four connections.
        var outcomes = new ConcurrentBag<(TimeSpan Started, bool Ok, string Error)>();
        var clock = Stopwatch.StartNew();
        TimeSpan? signalAt = null;
        using var stopLoad = new CancellationTokenSource();
        var load = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            while (!stopLoad.IsCancellationRequested)
            {
                var started = clock.Elapsed;
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{sidecar.Outbound}/hello");
                    request.Headers.Host = "billing";
                    using var response = await client.SendAsync(request, Ct);
                    outcomes.Add((started, response.StatusCode == HttpStatusCode.OK, response.StatusCode.ToString()));
                }
                catch (HttpRequestException ex)
                {
                    outcomes.Add((started, false, ex.Message));
                }
            }
        }, Ct)).ToList();

        await Task.Delay(400, Ct);
        signalAt = clock.Elapsed;
        sidecar.Process.Signal(SigTerm);

        // Readiness turns false at once; the inbound listener stops accepting.
        await Task.Delay(300, Ct);
        using (var ready = await client.GetAsync($"http://{sidecar.Stats}/ready", Ct))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        }

        // The listener closes right after readiness turns off; on a loaded machine the unbind can trail the
        // readiness flip by a few hundred milliseconds, so allow it a bounded moment.
        var refusedWithin = Stopwatch.StartNew();
        while (true)
        {
            using var fresh = new HttpClient();
            try
            {
                using var accepted = await fresh.GetAsync($"http://{sidecar.Inbound}/hello", Ct);
            }
            catch (HttpRequestException)
            {
                break;
            }

            Assert.True(refusedWithin.Elapsed < TimeSpan.FromSeconds(2), "the inbound listener still accepted new connections 2 s after readiness turned off");
            await Task.Delay(50, Ct);
        }

        // Keep the outbound load going until shortly before the drain period ends.
        await Task.Delay(drain - TimeSpan.FromMilliseconds(1000), Ct);
        await stopLoad.CancelAsync();
        await Task.WhenAll(load);

        foreach (var response in await Task.WhenAll(inFlight))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("billing slept 1500ms\n", await response.Content.ReadAsStringAsync(Ct));
        }

        var duringDrain = outcomes.Where(o => o.Started > signalAt).ToList();
        Assert.NotEmpty(duringDrain);
        Assert.All(outcomes, o => Assert.True(o.Ok, $"request started at {o.Started} failed: {o.Error}"));
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync(drain + TimeSpan.FromSeconds(15)));
        Assert.True(clock.Elapsed - signalAt >= drain - TimeSpan.FromMilliseconds(200), "outbound must stay for the drain period");
    }

    [Fact]
    public async Task Quitquitquit_exits_promptly_without_waiting_for_the_drain_period()
    {
        await using var sidecar = await SidecarProcess.StartAsync(new MeshYaml("job", 8080, drain: "60s"));
        using var client = new HttpClient();
        var clock = Stopwatch.StartNew();
        using var response = await client.PostAsync($"http://{sidecar.Admin}/quitquitquit", null, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
    }
}
