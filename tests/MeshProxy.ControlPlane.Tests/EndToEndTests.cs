using System.Net;
using System.Text.Json;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Samples.App;
using Microsoft.AspNetCore.Builder;

namespace MeshProxy.ControlPlane.Tests;

/// <summary>Control plane plus two real sidecars, requests through the sidecars to real backends.</summary>
public sealed class EndToEndTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    private static async Task<string> GetThroughAsync(InProcessSidecar sidecar, string host)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, "/"));
        request.Headers.Host = host;
        using var response = await Http.SendAsync(request, TestContext.Current.CancellationToken);
        return $"{(int)response.StatusCode} {(await response.Content.ReadAsStringAsync()).Trim()}";
    }

    private static async Task<HttpStatusCode> ReadyAsync(InProcessSidecar sidecar) =>
        (await Http.GetAsync(new Uri(sidecar.StatsUri, "/ready"), TestContext.Current.CancellationToken)).StatusCode;

    private static async Task<JsonElement> DumpAsync(InProcessSidecar sidecar) =>
        JsonDocument.Parse(await Http.GetStringAsync(new Uri(sidecar.AdminUri, "/config_dump"), TestContext.Current.CancellationToken)).RootElement;

    [Fact]
    public async Task Route_change_moves_traffic_outage_keeps_serving_restart_serves_saved_snapshot_as_stale()
    {
        await using var backendA = SampleApp.Build("backend-a", 0, null, quiet: true);
        await using var backendB = SampleApp.Build("backend-b", 0, null, quiet: true);
        await backendA.StartAsync(TestContext.Current.CancellationToken);
        await backendB.StartAsync(TestContext.Current.CancellationToken);

        var dir = RepoPaths.NewTempDirectory();
        var sidecarDir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "services.yaml", Yaml.Docs(
            Yaml.Service("shop", "test", 80, 1), // a virtual service: its route decides where requests go
            Yaml.Service("a", "test", 80, backendA.BoundPort()),
            Yaml.Service("b", "test", 80, backendB.BoundPort())));
        Yaml.Write(dir, "route.yaml", Yaml.Route("shop", "test", "shop", "a"));

        var cp = await TestControlPlane.StartAsync(dir);
        InProcessSidecar? web = null, api = null, restarted = null;
        try
        {
            web = await InProcessSidecar.StartAsync(InProcessSidecar.WriteBootstrap(sidecarDir, "web", "test", cp.GrpcUri.ToString()));
            api = await InProcessSidecar.StartAsync(InProcessSidecar.WriteBootstrap(sidecarDir, "api", "test", cp.GrpcUri.ToString()));
            await TestControlPlane.EventuallyAsync(async () =>
            {
                var rows = (await cp.SynczAsync()).EnumerateArray().ToList();
                return rows.Count == 2 && rows.All(r => r.GetProperty("status").GetString() == "SYNCED");
            }, "both sidecars connected and SYNCED");
            Assert.Equal("200 backend-a", await GetThroughAsync(web, "shop"));
            Assert.Equal("200 backend-a", await GetThroughAsync(api, "shop"));
            Assert.Equal(HttpStatusCode.OK, await ReadyAsync(web));

            var before = web.Store.Current.Version;
            Yaml.Write(dir, "route.yaml", Yaml.Route("shop", "test", "shop", "b"));
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(web.Store.Current.Version != before && api.Store.Current.Version != before), "new snapshot applied by both");
            Assert.Equal("200 backend-b", await GetThroughAsync(web, "shop"));
            Assert.Equal("200 backend-b", await GetThroughAsync(api, "shop"));

            // Control plane gone: both keep serving their last snapshot.
            await cp.DisposeAsync();
            Assert.Equal("200 backend-b", await GetThroughAsync(web, "shop"));
            Assert.Equal("200 backend-b", await GetThroughAsync(api, "shop"));

            // Restart one during the outage: it comes up from the saved snapshot, stale, ready, serving.
            var version = web.Store.Current.Version;
            await web.StopAsync();
            restarted = await InProcessSidecar.StartAsync(web.BootstrapPath);
            Assert.Equal(version, restarted.Store.Current.Version);
            Assert.Equal("200 backend-b", await GetThroughAsync(restarted, "shop"));
            Assert.Equal(HttpStatusCode.OK, await ReadyAsync(restarted));
            var dump = await DumpAsync(restarted);
            Assert.True(dump.GetProperty("stale").GetBoolean());
            Assert.Equal(version, dump.GetProperty("version").GetString());

            // The control plane returns on the same port: the restarted sidecar reconnects and is no longer stale.
            cp = await TestControlPlane.StartAsync(dir, cp.Host.GrpcEndPoint.Port);
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(!restarted.Store.Current.Stale), "reconnected and confirmed", TimeSpan.FromSeconds(15));
            dump = await DumpAsync(restarted);
            Assert.False(dump.GetProperty("stale").GetBoolean());
        }
        finally
        {
            foreach (var s in new[] { restarted, api, web })
            {
                if (s is not null)
                {
                    await s.DisposeAsync();
                }
            }

            await cp.DisposeAsync();
        }
    }

    [Fact]
    public async Task Sidecar_without_a_snapshot_is_not_ready_until_the_control_plane_answers()
    {
        await using var cp = await TestControlPlane.StartAsync(grpcPort: 0);
        var port = cp.Host.GrpcEndPoint.Port;
        await cp.DisposeAsync(); // nothing listens there now

        var sidecarDir = RepoPaths.NewTempDirectory();
        await using var sidecar = await InProcessSidecar.StartAsync(InProcessSidecar.WriteBootstrap(sidecarDir, "web", "test", $"http://127.0.0.1:{port}"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, await ReadyAsync(sidecar));
        var dump = await DumpAsync(sidecar);
        Assert.True(dump.GetProperty("provisional").GetBoolean());

        // The placeholder snapshot has no authorization policies: inbound refuses instead of judging by none.
        using (var inbound = await Http.GetAsync(new Uri($"http://{sidecar.InboundEndPoint}/charges"), TestContext.Current.CancellationToken))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, inbound.StatusCode);
            Assert.Equal("NR", Assert.Single(inbound.Headers.GetValues("x-meshproxy-response-flags")));
            Assert.Contains("waiting for the control plane", await inbound.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);
        }

        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "s.yaml", Yaml.Service("a", "test", 80, 9001));
        await using var back = await TestControlPlane.StartAsync(dir, port);
        await TestControlPlane.EventuallyAsync(async () => await ReadyAsync(sidecar) == HttpStatusCode.OK, "ready after first snapshot", TimeSpan.FromSeconds(15));
    }
}
