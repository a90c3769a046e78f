using System.Text.Json;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests;

/// <summary>The sidecar's control-plane client against a grpc-js server playing the control plane.</summary>
public sealed class SidecarClientWithGrpcJsServerTests
{
    [Fact]
    public async Task Sidecar_acks_a_good_snapshot_nacks_a_bad_one_and_keeps_serving_the_good_one()
    {
        var dir = RepoPaths.NewTempDirectory();
        var good = new { kind = "Service", @namespace = "test", name = "backend", version = "r1", yaml = Yaml.Service("backend", "test", 80, 9001) };
        var badRoute = new { kind = "HttpRoute", @namespace = "test", name = "backend", version = "r2", yaml = Yaml.Route("backend", "test", "backend", "nowhere") };
        var snapshots = Path.Combine(dir, "snapshots.json");
        File.WriteAllText(snapshots, JsonSerializer.Serialize(new object[]
        {
            new { version_info = "v1", resources = new object[] { good } },
            new { version_info = "v2", resources = new object[] { good, badRoute } },
        }));
        await using var server = NodePeer.Start("control_plane_server.js", snapshots);
        var port = (await server.NextAsync(e => e.GetProperty("type").GetString() == "listening")).GetProperty("port").GetInt32();

        await using var sidecar = await InProcessSidecar.StartAsync(InProcessSidecar.WriteBootstrap(dir, "web", "test", $"http://127.0.0.1:{port}"));

        bool IsRequest(JsonElement e) => e.GetProperty("type").GetString() == "request";
        var hello = await server.NextAsync(IsRequest);
        Assert.Equal("web", hello.GetProperty("node").GetProperty("workload").GetString());
        Assert.Equal("test", hello.GetProperty("node").GetProperty("namespace").GetString());
        Assert.Equal(string.Empty, hello.GetProperty("response_nonce").GetString());

        var ack = await server.NextAsync(IsRequest);
        Assert.Equal("n1", ack.GetProperty("response_nonce").GetString());
        Assert.Equal("v1", ack.GetProperty("version_info").GetString());
        Assert.Equal(JsonValueKind.Null, ack.GetProperty("error").ValueKind);

        var nack = await server.NextAsync(IsRequest);
        Assert.Equal("n2", nack.GetProperty("response_nonce").GetString());
        Assert.Equal("v1", nack.GetProperty("version_info").GetString()); // the version it keeps serving
        Assert.Contains("HttpRoute/test/backend:", nack.GetProperty("error").GetString());
        Assert.Contains("no Service answers to host 'nowhere'", nack.GetProperty("error").GetString());

        Assert.Equal("v1", sidecar.Store.Current.Version);
        Assert.False(sidecar.Store.Current.Stale);
        Assert.Equal("v2", sidecar.Store.LastRejection!.Version);
        Assert.True(File.Exists(sidecar.Source.SnapshotPath));
    }
}
