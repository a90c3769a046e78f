using System.Net.Http.Json;
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

    [Fact]
    public async Task A_pushed_document_that_is_not_yaml_is_nacked_and_a_later_good_snapshot_clears_last_error()
    {
        var dir = RepoPaths.NewTempDirectory();
        var backend = new { kind = "Service", @namespace = "test", name = "backend", version = "r1", yaml = Yaml.Service("backend", "test", 80, 9001) };
        // YamlDotNet's scanner throws InvalidOperationException (not YamlException) on this open flow mapping.
        var broken = new { kind = "Service", @namespace = "test", name = "broken", version = "r1", yaml = "a: { b: c\nd:\n" };
        var other = new { kind = "Service", @namespace = "test", name = "other", version = "r1", yaml = Yaml.Service("other", "test", 80, 9002) };
        var snapshots = Path.Combine(dir, "snapshots.json");
        File.WriteAllText(snapshots, JsonSerializer.Serialize(new object[]
        {
            new { version_info = "v1", resources = new object[] { backend } },
            new { version_info = "v2", resources = new object[] { backend, broken } },
            new { version_info = "v3", resources = new object[] { backend, other } },
        }));
        await using var server = NodePeer.Start("control_plane_server.js", snapshots);
        var port = (await server.NextAsync(e => e.GetProperty("type").GetString() == "listening")).GetProperty("port").GetInt32();
        await using var sidecar = await InProcessSidecar.StartAsync(InProcessSidecar.WriteBootstrap(dir, "web", "test", $"http://127.0.0.1:{port}"));
        using var http = new HttpClient();

        bool IsAnswer(JsonElement e) => e.GetProperty("type").GetString() == "request" && e.GetProperty("response_nonce").GetString() != string.Empty;
        Assert.Equal(JsonValueKind.Null, (await server.NextAsync(IsAnswer)).GetProperty("error").ValueKind);
        var nack = await server.NextAsync(IsAnswer);
        Assert.Equal("n2", nack.GetProperty("response_nonce").GetString());
        Assert.Equal("v1", nack.GetProperty("version_info").GetString());
        Assert.Contains("Service/test/broken:2: not valid YAML", nack.GetProperty("error").GetString(), StringComparison.Ordinal);

        // The third is good: ACKed on the same stream (a NACK, not a dropped connection), and lastError is gone.
        var ack = await server.NextAsync(IsAnswer);
        Assert.Equal("n3", ack.GetProperty("response_nonce").GetString());
        Assert.Equal(JsonValueKind.Null, ack.GetProperty("error").ValueKind);
        var dump = await http.GetFromJsonAsync<JsonElement>(new Uri(sidecar.AdminUri, "/config_dump"), TestContext.Current.CancellationToken);
        Assert.Equal("v3", dump.GetProperty("version").GetString());
        Assert.Equal(JsonValueKind.Null, dump.GetProperty("lastError").ValueKind);
        Assert.Null(sidecar.Store.LastRejection);
    }
}
