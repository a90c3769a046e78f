using System.Diagnostics;
using System.Text.Json;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests;

/// <summary>The control plane under real grpc-js clients, over real HTTP/2 on loopback.</summary>
public sealed class DiscoveryWithGrpcJsTests
{
    private static string[] Keys(JsonElement snapshot) =>
        snapshot.GetProperty("resources").EnumerateArray()
            .Select(r => $"{r.GetProperty("kind").GetString()}/{r.GetProperty("namespace").GetString()}/{r.GetProperty("name").GetString()}")
            .ToArray();

    private static JsonElement Row(JsonElement syncz, string workload) =>
        syncz.EnumerateArray().Single(r => r.GetProperty("workload").GetString() == workload);

    [Fact]
    public async Task Snapshot_is_acked_and_a_file_change_pushes_a_new_version()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "services.yaml", Yaml.Docs(Yaml.Service("cart", "shop", 80, 9001), Yaml.Service("pay", "shop", 80, 9002)));
        Yaml.Write(dir, "routes.yaml", Yaml.Route("cart", "shop", "cart", "cart"));
        await using var cp = await TestControlPlane.StartAsync(dir);
        await using var client = cp.Connect("web", "shop");

        var first = await client.NextSnapshotAsync();
        Assert.Equal(["HttpRoute/shop/cart", "Service/shop/cart", "Service/shop/pay"], Keys(first));
        Assert.Contains("kind: HttpRoute", first.GetProperty("resources")[0].GetProperty("yaml").GetString());
        await client.SendAsync("ack");
        var v1 = first.GetProperty("version").GetString();
        await TestControlPlane.EventuallyAsync(async () => Row(await cp.SynczAsync(), "web").GetProperty("ackedVersion").GetString() == v1, "ACK recorded");
        var row = Row(await cp.SynczAsync(), "web");
        Assert.Equal("SYNCED", row.GetProperty("status").GetString());
        Assert.Equal("shop", row.GetProperty("namespace").GetString());
        Assert.StartsWith("127.0.0.1:", row.GetProperty("address").GetString());
        Assert.Equal(first.GetProperty("nonce").GetString(), row.GetProperty("sentNonce").GetString());

        var changed = Stopwatch.StartNew();
        Yaml.Write(dir, "routes.yaml", Yaml.Route("cart", "shop", "cart", "pay"));
        var second = await client.NextSnapshotAsync();
        var latency = changed.Elapsed;
        Assert.NotEqual(v1, second.GetProperty("version").GetString());
        Assert.NotEqual(first.GetProperty("nonce").GetString(), second.GetProperty("nonce").GetString());
        Assert.Contains("host: pay", second.GetProperty("resources")[0].GetProperty("yaml").GetString());
        // Debounce (100 ms) plus parse and push; generous for a loaded 2-core machine, and reported.
        Assert.True(latency < TimeSpan.FromSeconds(3), $"change took {latency.TotalMilliseconds} ms to arrive");
        Console.WriteLine($"file change -> snapshot at the grpc-js client: {latency.TotalMilliseconds:F0} ms");

        row = Row(await cp.SynczAsync(), "web");
        Assert.Equal("STALE", row.GetProperty("status").GetString()); // sent, not yet ACKed
        await client.SendAsync("ack");
        await TestControlPlane.EventuallyAsync(async () => Row(await cp.SynczAsync(), "web").GetProperty("status").GetString() == "SYNCED", "second ACK");
        Assert.Contains("meshproxy_controlplane_pushes_total 2", await cp.MetricsAsync());
        Assert.Contains("meshproxy_controlplane_connected_sidecars 1", await cp.MetricsAsync());
    }

    [Fact]
    public async Task Nack_is_recorded_with_its_error_in_syncz_and_metrics()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "services.yaml", Yaml.Service("cart", "shop", 80, 9001));
        await using var cp = await TestControlPlane.StartAsync(dir);
        await using var client = cp.Connect("web", "shop");
        var first = await client.NextSnapshotAsync();
        await client.SendAsync("nack route points nowhere");

        await TestControlPlane.EventuallyAsync(async () => Row(await cp.SynczAsync(), "web").GetProperty("status").GetString() == "NACK", "NACK recorded");
        var nack = Row(await cp.SynczAsync(), "web").GetProperty("lastNack");
        Assert.Equal("route points nowhere", nack.GetProperty("error").GetString());
        Assert.Equal(first.GetProperty("nonce").GetString(), nack.GetProperty("nonce").GetString());
        Assert.Equal(first.GetProperty("version").GetString(), nack.GetProperty("version").GetString());
        Assert.Equal(string.Empty, Row(await cp.SynczAsync(), "web").GetProperty("ackedVersion").GetString());
        Assert.Contains("meshproxy_controlplane_nacks_total 1", await cp.MetricsAsync());
    }

    [Fact]
    public async Task Only_workloads_whose_snapshot_changed_get_a_push()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "shop.yaml", Yaml.Service("cart", "shop", 80, 9001));
        Yaml.Write(dir, "infra.yaml", Yaml.Service("redis", "infra", 6379, 9002));
        // "web" in shop may only reach its own namespace; "ops" in infra sees everything.
        Yaml.Write(dir, "scopes.yaml", Yaml.SidecarScope("web", "shop", "./*"));
        await using var cp = await TestControlPlane.StartAsync(dir);
        await using var web = cp.Connect("web", "shop");
        await using var ops = cp.Connect("ops", "infra");
        Assert.Equal(["Service/shop/cart"], Keys(await web.NextSnapshotAsync()));
        Assert.Equal(["Service/infra/redis", "Service/shop/cart"], Keys(await ops.NextSnapshotAsync()));

        Yaml.Write(dir, "infra.yaml", Yaml.Service("redis", "infra", 6379, 9003));
        var opsSecond = await ops.NextSnapshotAsync();
        Assert.Contains("port: 9003", opsSecond.GetProperty("resources")[0].GetProperty("yaml").GetString());
        Assert.False(await web.ReceivesWithinAsync(e => e.GetProperty("type").GetString() == "snapshot", TimeSpan.FromMilliseconds(700)),
            "web cannot reach infra, so it must not be pushed");
        Assert.Contains("meshproxy_controlplane_pushes_total 3", await cp.MetricsAsync());
    }

    [Fact]
    public async Task Invalid_resource_is_reported_and_its_last_good_version_keeps_serving()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "services.yaml", Yaml.Docs(Yaml.Service("cart", "shop", 80, 9001), Yaml.Service("pay", "shop", 80, 9002)));
        await using var cp = await TestControlPlane.StartAsync(dir);
        await using var client = cp.Connect("web", "shop");
        var first = await client.NextSnapshotAsync();
        await client.SendAsync("ack");

        // "pay" gets a port that is not a port; "cart" changes validly in the same edit.
        Yaml.Write(dir, "services.yaml", Yaml.Docs(Yaml.Service("cart", "shop", 80, 9011), Yaml.Service("pay", "shop", 80, 9002).Replace("port: 80", "port: eighty")));
        var second = await client.NextSnapshotAsync();
        Assert.Equal(["Service/shop/cart", "Service/shop/pay"], Keys(second));
        var resources = second.GetProperty("resources");
        Assert.Contains("port: 9011", resources[0].GetProperty("yaml").GetString());
        Assert.Equal(first.GetProperty("resources")[1].GetProperty("version").GetString(), resources[1].GetProperty("version").GetString());

        var configz = await cp.ConfigzAsync();
        Assert.Equal(["Service/shop/pay"], configz.GetProperty("keptLastGood").EnumerateArray().Select(e => e.GetString()!).ToArray());
        var error = Assert.Single(configz.GetProperty("errors").EnumerateArray());
        Assert.Equal(Path.Combine(dir, "services.yaml"), error.GetProperty("file").GetString());
        Assert.Equal(12, error.GetProperty("line").GetInt32());
        Assert.Equal("spec.ports[0].port", error.GetProperty("field").GetString());
        Assert.Contains("meshproxy_controlplane_invalid_resources 1", await cp.MetricsAsync());

        // Fixed: the error and the gauge clear.
        Yaml.Write(dir, "services.yaml", Yaml.Docs(Yaml.Service("cart", "shop", 80, 9011), Yaml.Service("pay", "shop", 80, 9012)));
        await client.NextSnapshotAsync();
        Assert.Equal(0, (await cp.ConfigzAsync()).GetProperty("errors").GetArrayLength());
        Assert.Contains("meshproxy_controlplane_invalid_resources 0", await cp.MetricsAsync());
    }

    [Fact]
    public async Task Not_yaml_unknown_kinds_unknown_fields_and_duplicates_written_while_running_are_reported_and_the_rest_serves()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "a-good.yaml", Yaml.Service("cart", "shop", 80, 9001).Replace("spec:\n", "spec:\n  futureField: 1\n"));
        await using var cp = await TestControlPlane.StartAsync(dir);
        await using var client = cp.Connect("web", "shop");
        var snapshot = await client.NextSnapshotAsync();

        Yaml.Write(dir, "b-broken.yaml", "kind: [unclosed\n  : : :\n");
        Yaml.Write(dir, "c-kind.yaml", "apiVersion: meshproxy.io/v1alpha1\nkind: Gateway\nmetadata: { name: g }\nspec: {}\n");
        Yaml.Write(dir, "d-dup.yaml", Yaml.Service("cart", "shop", 80, 9999));
        await TestControlPlane.EventuallyAsync(async () => (await cp.ConfigzAsync()).GetProperty("errors").GetArrayLength() == 3, "three errors reported");
        Assert.Equal(["Service/shop/cart"], Keys(snapshot));
        Assert.Contains("port: 9001", snapshot.GetProperty("resources")[0].GetProperty("yaml").GetString());
        Assert.False(await client.ReceivesWithinAsync(e => e.GetProperty("type").GetString() == "snapshot", TimeSpan.FromSeconds(1)),
            "nothing valid changed, so nothing is pushed");

        var configz = await cp.ConfigzAsync();
        var errors = configz.GetProperty("errors").EnumerateArray().Select(e => e.GetProperty("text").GetString()!).ToList();
        Assert.True(errors.Count == 3, string.Join("\n", errors));
        Assert.Contains(errors, e => e.Contains("b-broken.yaml:2: not valid YAML", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("c-kind.yaml:2: kind: unknown kind 'Gateway'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("d-dup.yaml:1: metadata.name: duplicate Service 'shop/cart' (first defined at", StringComparison.Ordinal));
        var warning = Assert.Single(configz.GetProperty("warnings").EnumerateArray());
        Assert.Equal("spec.futureField", warning.GetProperty("field").GetString());
        Assert.Contains("meshproxy_controlplane_invalid_resources 3", await cp.MetricsAsync());
    }

    [Fact]
    public async Task An_invalid_directory_at_start_up_is_refused_with_every_error()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "a-good.yaml", Yaml.Service("cart", "shop", 80, 9001));
        Yaml.Write(dir, "b-broken.yaml", "a: { b: c\nd:\n");
        Yaml.Write(dir, "c-kind.yaml", "apiVersion: meshproxy.io/v1alpha1\nkind: Gateway\nmetadata: { name: g }\nspec: {}\n");

        var refused = await Assert.ThrowsAsync<MeshProxy.Config.Parsing.ConfigException>(() => TestControlPlane.StartAsync(dir));
        Assert.Equal(2, refused.Errors.Count);
        Assert.Contains(refused.Errors, e => e.ToString().StartsWith($"{Path.Combine(dir, "b-broken.yaml")}:2: not valid YAML", StringComparison.Ordinal));
        Assert.Contains(refused.Errors, e => e.ToString().StartsWith($"{Path.Combine(dir, "c-kind.yaml")}:2: kind: unknown kind", StringComparison.Ordinal));
    }

    [Fact]
    public async Task First_request_without_a_node_is_refused_with_invalid_argument()
    {
        await using var cp = await TestControlPlane.StartAsync();
        await using var client = cp.Connect(string.Empty, "shop");
        var error = await client.NextAsync(e => e.GetProperty("type").GetString() == "error");
        Assert.Equal(3, error.GetProperty("code").GetInt32());
        Assert.Contains("node.workload", error.GetProperty("details").GetString());
    }
}
