using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>Real peers through two sidecars: a grpc-js client and server, a ws WebSocket client and a Kestrel WebSocket echo.</summary>
public sealed class GrpcAndWebSocketTests
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Grpc_calls_of_every_kind_pass_through_two_sidecars_with_status_and_trailers()
    {
        await using var server = ExternalProcess.Node("grpc-server.js");
        var port = JsonDocument.Parse(await server.WaitForLineAsync("\"port\"", PeerTimeout)).RootElement.GetProperty("port").GetInt32();
        await using var billing = await TestSidecar.StartAsync(new MeshYaml("billing", port, "GRPC"));
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("billing", 80, "GRPC", billing.Inbound.Port));

        await using var client = ExternalProcess.Node("grpc-client.js", store.Outbound.ToString(), "billing");
        var line = await client.WaitForLineAsync("\"unary\"", PeerTimeout);
        var result = JsonDocument.Parse(line).RootElement;

        Assert.StartsWith("hi|rid=", result.GetProperty("unary").GetProperty("text").GetString(), StringComparison.Ordinal);
        Assert.True(result.GetProperty("unary").GetProperty("text").GetString()!.Length > "hi|rid=".Length, "the sidecar adds x-request-id");
        Assert.Equal(["tick-0", "tick-1", "tick-2", "tick-3", "tick-4"], result.GetProperty("serverStream").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("a+b+c", result.GetProperty("clientStream").GetProperty("text").GetString());
        Assert.Equal(["echo:m0", "echo:m1", "echo:m2"], result.GetProperty("bidi").EnumerateArray().Select(e => e.GetString()));

        var fail = result.GetProperty("fail");
        Assert.Equal(5, fail.GetProperty("code").GetInt32()); // NOT_FOUND, carried in the trailers
        Assert.Equal("no such charge: ch_42 (ü, 100%)", fail.GetProperty("details").GetString());
        Assert.Equal("ch_42", fail.GetProperty("trailer").GetString());
    }

    [Fact]
    public async Task A_websocket_upgrade_passes_through_two_sidecars_and_echoes()
    {
        await using var app = await Backend.StartAsync("chat");
        await using var chat = await TestSidecar.StartAsync(new MeshYaml("chat", app.Port));
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("chat", 80, "HTTP", chat.Inbound.Port));

        await using var client = ExternalProcess.Node("ws-client.js", $"ws://{store.Outbound}/ws", "chat");
        var result = JsonDocument.Parse(await client.WaitForLineAsync("{", PeerTimeout)).RootElement;

        Assert.False(result.TryGetProperty("error", out var error), error.ToString());
        Assert.Equal(["one", "two", "three"], result.GetProperty("echoes").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(1000, result.GetProperty("code").GetInt32());
    }
}
