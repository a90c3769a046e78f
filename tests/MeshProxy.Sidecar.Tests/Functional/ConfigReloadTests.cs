using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>The bootstrap file is watched: a good change is swapped in atomically, a bad one is refused and the last good one keeps serving.</summary>
public sealed class ConfigReloadTests
{
    private static readonly TimeSpan WatchTimeout = TimeSpan.FromSeconds(10);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_changed_file_is_swapped_in_and_requests_follow_it()
    {
        await using var blue = await Backend.StartAsync("blue");
        await using var green = await Backend.StartAsync("green");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("billing", 80, "HTTP", blue.Port));
        using var client = new HttpClient();
        Assert.Equal("blue\n", await GetAsync(client, sidecar, "billing"));
        var before = sidecar.Store.Current.Version;

        await File.WriteAllTextAsync(sidecar.ConfigPath, new MeshYaml("store", 1).Service("billing", 80, "HTTP", green.Port).ToString(), Ct);

        await WaitUntilAsync(() => sidecar.Store.Current.Version != before);
        Assert.Equal("green\n", await GetAsync(client, sidecar, "billing"));
        var dump = await client.GetFromJsonAsync<JsonElement>($"http://{sidecar.Admin}/config_dump", Ct);
        Assert.Equal(sidecar.Store.Current.Version, dump.GetProperty("version").GetString());
        Assert.Equal(JsonValueKind.Null, dump.GetProperty("lastError").ValueKind);
    }

    [Fact]
    public async Task An_invalid_file_is_refused_with_file_line_field_and_reason_and_the_last_good_keeps_serving()
    {
        await using var blue = await Backend.StartAsync("blue");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("billing", 80, "HTTP", blue.Port));
        using var client = new HttpClient();
        var goodVersion = sidecar.Store.Current.Version;

        // Line 17 of the new file: a port out of range.
        var bad = new MeshYaml("store", 1).Service("billing", 80, "HTTP", blue.Port).ToString().Replace("port: 80,", "port: 99999,", StringComparison.Ordinal);
        await File.WriteAllTextAsync(sidecar.ConfigPath, bad, Ct);
        await WaitUntilAsync(() => sidecar.Store.LastRejection is not null);

        Assert.Equal(goodVersion, sidecar.Store.Current.Version);
        Assert.Equal("blue\n", await GetAsync(client, sidecar, "billing"));
        var dump = await client.GetFromJsonAsync<JsonElement>($"http://{sidecar.Admin}/config_dump", Ct);
        Assert.Equal(goodVersion, dump.GetProperty("version").GetString());
        var error = dump.GetProperty("lastError").GetProperty("errors")[0];
        Assert.Equal(sidecar.ConfigPath, error.GetProperty("file").GetString());
        Assert.Equal(bad.Split('\n').ToList().FindIndex(l => l.Contains("99999", StringComparison.Ordinal)) + 1, error.GetProperty("line").GetInt32());
        Assert.Equal("spec.ports[0].port", error.GetProperty("field").GetString());
        Assert.Contains("between 1 and 65535", error.GetProperty("reason").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Yaml_that_is_not_yaml_is_refused_and_a_later_good_file_recovers()
    {
        await using var blue = await Backend.StartAsync("blue");
        await using var green = await Backend.StartAsync("green");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("billing", 80, "HTTP", blue.Port));
        using var client = new HttpClient();

        await File.WriteAllTextAsync(sidecar.ConfigPath, "kind: [unclosed\n  : : :", Ct);
        await WaitUntilAsync(() => sidecar.Store.LastRejection is not null);
        Assert.Contains("not valid YAML", sidecar.Store.LastRejection!.Message, StringComparison.Ordinal);
        Assert.Equal("blue\n", await GetAsync(client, sidecar, "billing"));

        await File.WriteAllTextAsync(sidecar.ConfigPath, new MeshYaml("store", 1).Service("billing", 80, "HTTP", green.Port).ToString(), Ct);
        await WaitUntilAsync(async () => await GetAsync(client, sidecar, "billing") == "green\n");
    }

    [Fact]
    public async Task A_request_in_flight_finishes_on_the_snapshot_it_started_with()
    {
        await using var blue = await Backend.StartAsync("blue");
        await using var green = await Backend.StartAsync("green");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("billing", 80, "HTTP", blue.Port));
        using var client = new HttpClient();
        var before = sidecar.Store.Current.Version;

        var slow = GetAsync(client, sidecar, "billing", "/slow?ms=1500");
        await Task.Delay(300, Ct);
        await File.WriteAllTextAsync(sidecar.ConfigPath, new MeshYaml("store", 1).Service("billing", 80, "HTTP", green.Port).ToString(), Ct);
        await WaitUntilAsync(() => sidecar.Store.Current.Version != before);

        Assert.Equal("green\n", await GetAsync(client, sidecar, "billing"));
        Assert.Equal("blue slept 1500ms\n", await slow);
    }

    [Fact]
    public async Task A_route_to_a_missing_service_refuses_the_whole_file()
    {
        await using var blue = await Backend.StartAsync("blue");
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("billing", 80, "HTTP", blue.Port));
        var bad = new MeshYaml("store", 1).Service("billing", 80, "HTTP", blue.Port).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: HttpRoute
            metadata: { name: billing-split, namespace: test }
            spec:
              hosts: [billing]
              http:
                - route:
                    - destination: { host: billing-v2 }
            """);
        await File.WriteAllTextAsync(sidecar.ConfigPath, bad.ToString(), Ct);
        await WaitUntilAsync(() => sidecar.Store.LastRejection is not null);
        var error = sidecar.Store.LastRejection!.Errors.Single();
        Assert.Equal("spec.http[0].route[0].destination.host", error.FieldPath);
        Assert.Contains("billing-v2", error.Reason, StringComparison.Ordinal);
    }

    private static async Task<string> GetAsync(HttpClient client, TestSidecar sidecar, string host, string path = "/")
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, path));
        request.Headers.Host = host;
        using var response = await client.SendAsync(request, Ct);
        return await response.Content.ReadAsStringAsync(Ct);
    }

    private static Task WaitUntilAsync(Func<bool> condition) => WaitUntilAsync(() => Task.FromResult(condition()));

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + WatchTimeout;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the file watcher did not pick up the change in time");
            await Task.Delay(50, Ct);
        }
    }
}
