using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Google.Protobuf;
using MeshProxy.Grpc.Client.Internal;
using MeshProxy.Grpc.Internal;

namespace MeshProxy.Grpc.Client;

/// <summary>
/// A streaming call in progress. One writer and one reader may run at the same time (full duplex);
/// writes must not overlap each other, nor reads each other. Every failure is a
/// <see cref="GrpcStatusException"/>; the server's own status arrives through the read side.
/// </summary>
public sealed class GrpcDuplexCall<TRequest, TResponse> : IAsyncDisposable
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    private readonly CallScope scope;
    private readonly HttpRequestMessage request;
    private readonly DuplexContent content;
    private readonly Task<HttpResponseMessage> send;
    private readonly MessageParser<TResponse> parser;
    private readonly int maxMessageSize;
    private PipeWriter? writer;
    private ResponseReader<TResponse>? reader;
    private bool requestCompleted;
    private bool finished;

    internal GrpcDuplexCall(
        CallScope scope,
        HttpRequestMessage request,
        DuplexContent content,
        Task<HttpResponseMessage> send,
        MessageParser<TResponse> parser,
        int maxMessageSize)
    {
        this.scope = scope;
        this.request = request;
        this.content = content;
        this.send = send;
        this.parser = parser;
        this.maxMessageSize = maxMessageSize;
    }

    /// <summary>Sends one request message and flushes it to the wire.</summary>
    public async Task WriteAsync(TRequest message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (requestCompleted)
        {
            throw new InvalidOperationException("The request stream is already complete.");
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(scope.Token, cancellationToken);
        try
        {
            writer ??= PipeWriter.Create(await GetRequestStreamAsync(linked.Token), new StreamPipeWriterOptions(leaveOpen: true));
            MessageFraming.WriteMessage(writer, message);
            await writer.FlushAsync(linked.Token);
        }
        catch (Exception ex) when (scope.Translate(ex) is var translated && translated != ex)
        {
            throw translated;
        }
    }

    /// <summary>Ends the request stream (END_STREAM); responses can still be read.</summary>
    public async Task CompleteRequestAsync()
    {
        if (requestCompleted)
        {
            return;
        }

        requestCompleted = true;
        try
        {
            if (writer is not null)
            {
                await writer.CompleteAsync();
            }
        }
        finally
        {
            content.Complete();
        }
    }

    /// <summary>The next response message, or null once the server ended the call with OK.</summary>
    public async Task<TResponse?> ReadAsync(CancellationToken cancellationToken = default)
    {
        if (finished)
        {
            return null;
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(scope.Token, cancellationToken);
        try
        {
            reader ??= await ResponseReader<TResponse>.CreateAsync(await send.WaitAsync(linked.Token), parser, maxMessageSize, linked.Token);
            var message = await reader.ReadAsync(linked.Token);
            finished = message is null;
            return message;
        }
        catch (Exception ex)
        {
            finished = true;
            var translated = scope.Translate(ex);
            if (translated == ex)
            {
                throw;
            }

            throw translated;
        }
    }

    /// <summary>All remaining response messages; throws the status if it is not OK.</summary>
    public async IAsyncEnumerable<TResponse> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await ReadAsync(cancellationToken) is { } message)
        {
            yield return message;
        }
    }

    /// <summary>Releases the call; if its status has not been read yet, the call is cancelled (RST_STREAM).</summary>
    public async ValueTask DisposeAsync()
    {
        if (!finished)
        {
            scope.Cancel();
        }

        content.Abort();
        try
        {
            await send;
        }
        catch (Exception)
        {
            // Cancelling is how we end an unfinished call; the failure it causes is expected.
        }

        if (reader is not null)
        {
            await reader.DisposeAsync();
        }
        else if (send.IsCompletedSuccessfully)
        {
            send.Result.Dispose();
        }

        request.Dispose();
        scope.Dispose();
    }

    private async Task<Stream> GetRequestStreamAsync(CancellationToken cancellationToken)
    {
        // If the connection cannot be made, SendAsync fails without ever asking for the body.
        var ready = await Task.WhenAny(content.RequestStream, send).WaitAsync(cancellationToken);
        if (ready == send && !content.RequestStream.IsCompleted)
        {
            await send;
            throw new GrpcStatusException(StatusCode.Internal, "The server answered before the request stream was opened.");
        }

        return await content.RequestStream;
    }
}
