using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

public sealed class AdminTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Config_dump_shows_version_workload_listeners_and_services()
    {
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 8080).Service("billing", 80, "HTTP", 9000, 9001));
        using var client = new HttpClient();
        var dump = await client.GetFromJsonAsync<JsonElement>($"http://{sidecar.Admin}/config_dump", Ct);

        Assert.Equal(sidecar.Store.Current.Version, dump.GetProperty("version").GetString());
        Assert.Equal(12, dump.GetProperty("version").GetString()!.Length);
        Assert.Equal("store", dump.GetProperty("workload").GetProperty("name").GetString());
        Assert.Equal(sidecar.Outbound.ToString(), dump.GetProperty("listeners").GetProperty("outbound").GetString());
        Assert.Equal("inbound|8080||", dump.GetProperty("inbound").GetProperty("cluster").GetString());
        var billing = dump.GetProperty("virtualHosts").EnumerateArray().Single();
        Assert.Equal("outbound|80||billing.test.svc.cluster.local", billing.GetProperty("cluster").GetString());
        Assert.Equal(2, billing.GetProperty("endpoints").GetArrayLength());
    }

    [Fact]
    public async Task Admin_listens_on_loopback_only_and_commands_need_POST()
    {
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 8080));
        Assert.Equal(IPAddress.Loopback, sidecar.Admin.Address);
        using var client = new HttpClient();
        using var get = await client.GetAsync($"http://{sidecar.Admin}/quitquitquit", Ct);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, get.StatusCode);
        using var drainGet = await client.GetAsync($"http://{sidecar.Admin}/drain", Ct);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, drainGet.StatusCode);
        Assert.True(sidecar.Lifecycle.IsReady, "a GET must not have changed anything");
    }

    [Fact]
    public async Task Ready_is_true_once_up_and_drain_turns_it_false_and_closes_inbound()
    {
        await using var app = await Backend.StartAsync("billing");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("billing", app.Port).Service("billing", 80, "HTTP", app.Port));
        using var client = new HttpClient();
        Assert.Equal("ready\n", await client.GetStringAsync($"http://{sidecar.Stats}/ready", Ct));
        Assert.Equal("live\n", await client.GetStringAsync($"http://{sidecar.Stats}/live", Ct));

        using var drain = await client.PostAsync($"http://{sidecar.Admin}/drain", null, Ct);
        Assert.Equal(HttpStatusCode.OK, drain.StatusCode);
        await sidecar.Lifecycle.DrainInboundAsync();

        using var ready = await client.GetAsync($"http://{sidecar.Stats}/ready", Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => client.GetAsync(sidecar.InboundUri, Ct));

        // Outbound keeps serving the app's own calls while inbound drains.
        using var request = new HttpRequestMessage(HttpMethod.Get, sidecar.OutboundUri);
        request.Headers.Host = "billing";
        using var outbound = await client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, outbound.StatusCode);
    }
}
