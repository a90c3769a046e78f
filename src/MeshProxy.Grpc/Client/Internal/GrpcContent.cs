using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using MeshProxy.Grpc.Internal;

namespace MeshProxy.Grpc.Client.Internal;

/// <summary>The request body of a unary call: one framed message written straight into the HTTP/2 stream.</summary>
internal sealed class UnaryContent : HttpContent
{
    private readonly IMessage message;

    public UnaryContent(IMessage message)
    {
        this.message = message;
        Headers.ContentType = new MediaTypeHeaderValue(GrpcProtocol.ContentType);
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        var writer = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
        MessageFraming.WriteMessage(writer, message);
        await writer.FlushAsync(cancellationToken);
        await writer.CompleteAsync();
    }

    protected override bool TryComputeLength(out long length)
    {
        length = MessageFraming.HeaderSize + message.CalculateSize();
        return true;
    }
}

/// <summary>
/// The request body of a streaming call. HttpClient hands us the request stream and waits for
/// SerializeToStreamAsync to finish before it sends END_STREAM, so we give the stream to the call
/// and finish only when the call says the request side is done. Meanwhile the response is read:
/// SocketsHttpHandler returns the response as soon as its headers arrive (HTTP/2 duplex).
/// </summary>
internal sealed class DuplexContent : HttpContent
{
    private readonly TaskCompletionSource<Stream> streamReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource requestDone = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public DuplexContent()
    {
        Headers.ContentType = new MediaTypeHeaderValue(GrpcProtocol.ContentType);
    }

    public Task<Stream> RequestStream => streamReady.Task;

    /// <summary>Ends the request stream (END_STREAM).</summary>
    public void Complete() => requestDone.TrySetResult();

    /// <summary>Abandons the request stream, for a call that is being cancelled.</summary>
    public void Abort() => requestDone.TrySetCanceled();

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        streamReady.TrySetResult(stream);
        await requestDone.Task.WaitAsync(cancellationToken);
    }

    protected override bool TryComputeLength(out long length)
    {
        length = -1;
        return false;
    }
}
