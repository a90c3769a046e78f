using MeshProxy.Cli;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests;

public sealed class CliTests
{
    [Fact]
    public async Task Proxy_status_prints_one_row_per_connected_sidecar_with_its_sync_status()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "s.yaml", Yaml.Service("cart", "shop", 80, 9001));
        await using var cp = await TestControlPlane.StartAsync(dir);
        await using var synced = cp.Connect("web", "shop");
        await using var nacking = cp.Connect("api", "shop");
        var snapshot = await synced.NextSnapshotAsync();
        await nacking.NextSnapshotAsync();
        await synced.SendAsync("ack");
        await nacking.SendAsync("nack bad route");
        await TestControlPlane.EventuallyAsync(async () => (await cp.SynczAsync()).EnumerateArray().Count(r => r.GetProperty("status").GetString() != "STALE") == 2, "answers recorded");

        var output = new StringWriter();
        var rc = await ProxyStatusCommand.RunAsync([cp.MonitoringUri], output, new StringWriter(), TestContext.Current.CancellationToken);
        Assert.Equal(0, rc);
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("NAME", lines[0]);
        Assert.Contains("VERSION ACKED", lines[0]);
        var version = snapshot.GetProperty("version").GetString()!;
        Assert.Contains(lines, l => l.StartsWith("web-grpcjs.shop", StringComparison.Ordinal) && l.Contains("SYNCED") && l.Contains(version));
        Assert.Contains(lines, l => l.StartsWith("api-grpcjs.shop", StringComparison.Ordinal) && l.Contains("NACK (bad route)"));
    }

    [Fact]
    public async Task Proxy_status_against_nothing_fails_clearly()
    {
        var error = new StringWriter();
        var rc = await ProxyStatusCommand.RunAsync([new Uri("http://127.0.0.1:1")], new StringWriter(), error, TestContext.Current.CancellationToken);
        Assert.Equal(1, rc);
        Assert.Contains("cannot read /debug/syncz of http://127.0.0.1:1/", error.ToString());
        Assert.Contains("0 of 1 replicas (at the addresses given) answered", error.ToString());
    }

    [Fact]
    public void Validate_prints_file_line_field_reason_and_exits_1()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "ok.yaml", Yaml.Service("cart", "shop", 80, 9001));
        Yaml.Write(dir, "bad.yaml", Yaml.Service("pay", "shop", 80, 9002).Replace("port: 80", "port: eighty"));
        var output = new StringWriter();
        Assert.Equal(1, ValidateCommand.Run(dir, output, new StringWriter()));
        Assert.Contains($"{Path.Combine(dir, "bad.yaml")}:5: spec.ports[0].port: must be a whole number", output.ToString());

        File.Delete(Path.Combine(dir, "bad.yaml"));
        Assert.Equal(0, ValidateCommand.Run(dir, new StringWriter(), new StringWriter()));
        Assert.Equal(0, ValidateCommand.Run(Path.Combine(RepoPaths.Root, "samples", "controlplane"), new StringWriter(), new StringWriter()));
    }
}
