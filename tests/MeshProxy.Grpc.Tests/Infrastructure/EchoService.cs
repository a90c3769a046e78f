using Google.Protobuf;
using MeshProxy.Grpc.Server;
using MeshProxy.Grpc.Tests.Echo;

namespace MeshProxy.Grpc.Tests.Infrastructure;

/// <summary>The C# side of echo.proto, with the same behaviour as peers/echo_server.js.</summary>
internal sealed class EchoService
{
    public const string Unary = "/meshproxy.test.v1.Echo/Unary";
    public const string ServerStream = "/meshproxy.test.v1.Echo/ServerStream";
    public const string ClientStream = "/meshproxy.test.v1.Echo/ClientStream";
    public const string Bidi = "/meshproxy.test.v1.Echo/Bidi";

    /// <summary>Text that makes Unary throw an exception that is not a status.</summary>
    public const string ThrowText = "throw";
    public const string SecretDetail = "secret /etc/mesh/key.pem detail";

    /// <summary>Set when a delayed Unary saw its cancellation token fire.</summary>
    public TaskCompletionSource DelayCancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public GrpcServerBuilder Register(GrpcServerBuilder builder) => builder
        .AddUnary<EchoRequest, EchoReply>(Unary, EchoRequest.Parser, UnaryAsync)
        .AddServerStreaming<EchoRequest, EchoReply>(ServerStream, EchoRequest.Parser, ServerStreamAsync)
        .AddClientStreaming<EchoRequest, EchoReply>(ClientStream, EchoRequest.Parser, ClientStreamAsync)
        .AddDuplexStreaming<EchoRequest, EchoReply>(Bidi, EchoRequest.Parser, BidiAsync);

    private async Task<EchoReply> UnaryAsync(EchoRequest request, GrpcCallContext context)
    {
        ThrowIfAsked(request);
        if (request.Text == ThrowText)
        {
            throw new InvalidOperationException(SecretDetail);
        }

        if (request.DelayMs > 0)
        {
            try
            {
                await Task.Delay(request.DelayMs, context.CancellationToken);
            }
            catch (OperationCanceledException)
            {
                DelayCancelled.TrySetResult();
                throw;
            }
        }

        return new EchoReply
        {
            Text = request.Text,
            Received = request.Payload.Length,
            Metadata = context.GetMetadata("x-test") ?? string.Empty,
        };
    }

    private static async Task ServerStreamAsync(EchoRequest request, IGrpcStreamWriter<EchoReply> writer, GrpcCallContext context)
    {
        for (var i = 0; i < request.Count; i++)
        {
            await writer.WriteAsync(new EchoReply { Text = request.Text, Index = i });
        }
    }

    private static async Task<EchoReply> ClientStreamAsync(IAsyncEnumerable<EchoRequest> requests, GrpcCallContext context)
    {
        var texts = new List<string>();
        await foreach (var request in requests)
        {
            texts.Add(request.Text);
        }

        return new EchoReply { Text = string.Join(',', texts), Received = texts.Count };
    }

    private static async Task BidiAsync(IAsyncEnumerable<EchoRequest> requests, IGrpcStreamWriter<EchoReply> writer, GrpcCallContext context)
    {
        var index = 0;
        await foreach (var request in requests)
        {
            ThrowIfAsked(request);
            await writer.WriteAsync(new EchoReply
            {
                Text = request.Text,
                Index = index++,
                Metadata = context.GetMetadata("x-test") ?? string.Empty,
            });
        }
    }

    private static void ThrowIfAsked(EchoRequest request)
    {
        if (request.FailCode != 0)
        {
            throw new GrpcStatusException((StatusCode)request.FailCode, request.FailMessage);
        }
    }

    public static EchoRequest Request(string text, int count = 0, int delayMs = 0, ByteString? payload = null) =>
        new() { Text = text, Count = count, DelayMs = delayMs, Payload = payload ?? ByteString.Empty };
}
