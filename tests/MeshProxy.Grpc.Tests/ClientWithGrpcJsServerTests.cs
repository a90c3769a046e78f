using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using MeshProxy.Grpc.Client;
using MeshProxy.Grpc.Tests.Echo;
using MeshProxy.Grpc.Tests.Infrastructure;

namespace MeshProxy.Grpc.Tests;

public sealed class GrpcJsServerFixture : IAsyncLifetime
{
    private NodePeer? node;

    public Uri Address { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        node = NodePeer.Start("echo_server.js");
        var ready = await node.ReadJsonAsync(TimeSpan.FromSeconds(20));
        Address = new Uri($"http://127.0.0.1:{ready.GetProperty("port").GetInt32()}");
    }

    public async ValueTask DisposeAsync()
    {
        if (node is not null)
        {
            await node.DisposeAsync();
        }
    }
}

/// <summary>Our client against a real gRPC server (@grpc/grpc-js), h2c.</summary>
public sealed class ClientWithGrpcJsServerTests(GrpcJsServerFixture server) : IClassFixture<GrpcJsServerFixture>
{
    private static GrpcCallOptions Options(TimeSpan? timeout = null) => new()
    {
        Deadline = DateTimeOffset.UtcNow + (timeout ?? TimeSpan.FromSeconds(20)),
        Metadata = [new("x-test", "from-dotnet")],
        CancellationToken = TestContext.Current.CancellationToken,
    };

    [Fact]
    public async Task Unary_call_succeeds_with_metadata()
    {
        using var client = new GrpcClient(server.Address);

        var reply = await client.UnaryAsync(EchoService.Unary, EchoService.Request("héllo", payload: Google.Protobuf.ByteString.CopyFrom(new byte[1234])), EchoReply.Parser, Options());

        Assert.Equal("héllo", reply.Text);
        Assert.Equal("from-dotnet", reply.Metadata);
        Assert.Equal(1234, reply.Received);
    }

    [Fact]
    public async Task Server_error_status_surfaces_with_code_and_decoded_message()
    {
        using var client = new GrpcClient(server.Address);
        var request = new EchoRequest { FailCode = (int)StatusCode.PermissionDenied, FailMessage = "nein: 100% verboten — 日本" };

        var ex = await Assert.ThrowsAsync<GrpcStatusException>(() => client.UnaryAsync(EchoService.Unary, request, EchoReply.Parser, Options()));

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Equal("nein: 100% verboten — 日本", ex.Message);
    }

    [Fact]
    public async Task Bidi_stream_exchanges_several_messages()
    {
        using var client = new GrpcClient(server.Address);
        await using var call = client.StartDuplex<EchoRequest, EchoReply>(EchoService.Bidi, EchoReply.Parser, Options());

        // Each reply is read before the next request is written: both directions open at once.
        for (var i = 0; i < 5; i++)
        {
            await call.WriteAsync(EchoService.Request($"m{i}"), TestContext.Current.CancellationToken);
            var reply = await call.ReadAsync(TestContext.Current.CancellationToken);
            Assert.NotNull(reply);
            Assert.Equal($"m{i}", reply.Text);
            Assert.Equal(i, reply.Index);
            Assert.Equal("from-dotnet", reply.Metadata);
        }

        await call.CompleteRequestAsync();
        Assert.Null(await call.ReadAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task Bidi_stream_surfaces_an_error_status_from_mid_stream()
    {
        using var client = new GrpcClient(server.Address);
        await using var call = client.StartDuplex<EchoRequest, EchoReply>(EchoService.Bidi, EchoReply.Parser, Options());

        await call.WriteAsync(EchoService.Request("ok"), TestContext.Current.CancellationToken);
        Assert.Equal("ok", (await call.ReadAsync(TestContext.Current.CancellationToken))!.Text);
        await call.WriteAsync(new EchoRequest { FailCode = (int)StatusCode.Aborted, FailMessage = "stop" }, TestContext.Current.CancellationToken);

        var ex = await Assert.ThrowsAsync<GrpcStatusException>(() => call.ReadAsync(TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.Aborted, ex.StatusCode);
        Assert.Equal("stop", ex.Message);
    }

    [Fact]
    public async Task Server_streaming_method_through_a_duplex_call()
    {
        using var client = new GrpcClient(server.Address);
        await using var call = client.StartDuplex<EchoRequest, EchoReply>(EchoService.ServerStream, EchoReply.Parser, Options());
        await call.WriteAsync(EchoService.Request("s", count: 4), TestContext.Current.CancellationToken);
        await call.CompleteRequestAsync();

        var indexes = new List<int>();
        await foreach (var reply in call.ReadAllAsync(TestContext.Current.CancellationToken))
        {
            indexes.Add(reply.Index);
        }

        Assert.Equal([0, 1, 2, 3], indexes);
    }

    [Fact]
    public async Task Deadline_exceeded_fails_the_call_in_time()
    {
        using var client = new GrpcClient(server.Address);
        var stopwatch = Stopwatch.StartNew();

        var ex = await Assert.ThrowsAsync<GrpcStatusException>(() =>
            client.UnaryAsync(EchoService.Unary, EchoService.Request("slow", delayMs: 10_000), EchoReply.Parser, Options(TimeSpan.FromMilliseconds(300))));

        Assert.Equal(StatusCode.DeadlineExceeded, ex.StatusCode);
        Assert.InRange(stopwatch.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Server_not_listening_is_unavailable()
    {
        // A port that was free a moment ago: nothing listens there now.
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        using var client = new GrpcClient(new Uri($"http://127.0.0.1:{port}"));

        var unary = await Assert.ThrowsAsync<GrpcStatusException>(() =>
            client.UnaryAsync(EchoService.Unary, EchoService.Request("x"), EchoReply.Parser, Options()));
        Assert.Equal(StatusCode.Unavailable, unary.StatusCode);

        await using var call = client.StartDuplex<EchoRequest, EchoReply>(EchoService.Bidi, EchoReply.Parser, Options());
        var duplex = await Assert.ThrowsAsync<GrpcStatusException>(() => call.WriteAsync(EchoService.Request("x"), TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.Unavailable, duplex.StatusCode);
    }

    [Fact]
    public async Task Unimplemented_method_on_a_real_server()
    {
        using var client = new GrpcClient(server.Address);

        var ex = await Assert.ThrowsAsync<GrpcStatusException>(() =>
            client.UnaryAsync("/meshproxy.test.v1.Echo/Missing", EchoService.Request("x"), EchoReply.Parser, Options()));

        Assert.Equal(StatusCode.Unimplemented, ex.StatusCode);
    }
}
