using System.Text.Json;
using MeshProxy.Grpc.Server;
using MeshProxy.Grpc.Tests.Infrastructure;

namespace MeshProxy.Grpc.Tests;

public sealed class GrpcHostFixture : IAsyncLifetime
{
    /// <summary>Small, so the oversize scenario stays cheap.</summary>
    public const int MaxReceive = 64 * 1024;

    internal GrpcTestHost Host { get; private set; } = null!;

    public async ValueTask InitializeAsync() =>
        Host = await GrpcTestHost.StartAsync(new GrpcServerOptions { MaxReceiveMessageSize = MaxReceive });

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}

/// <summary>Our server on Kestrel, called by a real gRPC client (@grpc/grpc-js).</summary>
public sealed class ServerWithGrpcJsClientTests(GrpcHostFixture fixture) : IClassFixture<GrpcHostFixture>
{
    private async Task<JsonElement> RunClientAsync(string scenario)
    {
        await using var node = NodePeer.Start("echo_client.js", fixture.Host.HostPort, scenario);
        var result = await node.ReadJsonAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(scenario, result.GetProperty("scenario").GetString());
        return result;
    }

    private static string[] Texts(JsonElement result) =>
        result.GetProperty("replies").EnumerateArray().Select(r => r.GetProperty("text").GetString()!).ToArray();

    [Fact]
    public async Task Unary_call_echoes_text_and_metadata()
    {
        var result = await RunClientAsync("unary");

        Assert.Equal(0, result.GetProperty("code").GetInt32());
        var reply = Assert.Single(result.GetProperty("replies").EnumerateArray());
        Assert.Equal("héllo wörld", reply.GetProperty("text").GetString());
        Assert.Equal("meta-value", reply.GetProperty("metadata").GetString());
        Assert.Equal(10, reply.GetProperty("received").GetInt32());
    }

    [Fact]
    public async Task Server_streaming_delivers_every_message_in_order()
    {
        var result = await RunClientAsync("server_stream");

        Assert.Equal(0, result.GetProperty("code").GetInt32());
        var indexes = result.GetProperty("replies").EnumerateArray().Select(r => r.GetProperty("index").GetInt32());
        Assert.Equal([0, 1, 2, 3, 4], indexes);
    }

    [Fact]
    public async Task Client_streaming_sees_every_request()
    {
        var result = await RunClientAsync("client_stream");

        Assert.Equal(0, result.GetProperty("code").GetInt32());
        var reply = Assert.Single(result.GetProperty("replies").EnumerateArray());
        Assert.Equal("a,b,c,d", reply.GetProperty("text").GetString());
        Assert.Equal(4, reply.GetProperty("received").GetInt32());
    }

    [Fact]
    public async Task Bidi_streaming_ping_pongs()
    {
        var result = await RunClientAsync("bidi");

        Assert.Equal(0, result.GetProperty("code").GetInt32());
        Assert.Equal(["one", "two", "three"], Texts(result));
    }

    [Fact]
    public async Task Handler_status_reaches_the_client_with_its_message_intact()
    {
        var result = await RunClientAsync("error");

        Assert.Equal((int)StatusCode.FailedPrecondition, result.GetProperty("code").GetInt32());
        Assert.Equal("Überfall: 100% kaputt\n— ok? 日本", result.GetProperty("details").GetString());
    }

    [Fact]
    public async Task Expired_deadline_is_deadline_exceeded_and_cancels_the_handler()
    {
        var result = await RunClientAsync("deadline");

        Assert.Equal((int)StatusCode.DeadlineExceeded, result.GetProperty("code").GetInt32());
        // The server's own deadline (from grpc-timeout) must have cancelled the handler's token.
        var cancelled = fixture.Host.Service.DelayCancelled.Task;
        await Task.WhenAny(cancelled, Task.Delay(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken));
        Assert.True(cancelled.IsCompleted, "handler not cancelled; server log:\n" + string.Join('\n', fixture.Host.Logs.Entries.Select(e => e.Message)));
    }

    [Fact]
    public async Task Oversize_request_is_resource_exhausted()
    {
        var result = await RunClientAsync("oversize");

        Assert.Equal((int)StatusCode.ResourceExhausted, result.GetProperty("code").GetInt32());
        Assert.Contains(GrpcHostFixture.MaxReceive.ToString(), result.GetProperty("details").GetString(), StringComparison.Ordinal);
    }
}
