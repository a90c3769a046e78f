using System.Buffers;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace MeshProxy.Sidecar.ExternalAuthorization;

/// <summary>
/// The request body for a Check (includeRequestBodyInCheck): the first bytes are read into a pooled buffer before the
/// Check, and this layer then becomes the request's body, giving the forwarder those bytes again before the rest
/// of the original body, so the app receives the body whole. The buffer goes back to the pool when the response is
/// done (registered for disposal), never while the forwarder may still read it.
/// </summary>
internal sealed class CheckedBody : DelegatingStream
{
    private byte[]? _buffer;
    private readonly int _count;
    private int _position;

    private CheckedBody(Stream inner, byte[] buffer, int count) : base(inner, leaveOpen: true)
    {
        _buffer = buffer;
        _count = count;
    }

    /// <summary>What was read: the bytes the Check carries, whether the body went on past them, or that it is too large to check.</summary>
    public readonly record struct Held(ReadOnlyMemory<byte> Bytes, bool Partial, bool TooLarge);

    /// <summary>
    /// Reads up to <see cref="RequestBodyInCheck.MaxRequestBytes"/> of the body (one more when its length is not
    /// declared, to know whether it goes on) and puts them back in front of the rest as the request's body. A body
    /// longer than the limit is <see cref="Held.TooLarge"/> unless partial messages are allowed; a declared length
    /// over the limit is known without reading anything.
    /// </summary>
    public static async Task<Held> ReadAsync(HttpContext context, RequestBodyInCheck spec, CancellationToken cancellationToken)
    {
        var request = context.Request;
        var declared = request.ContentLength;
        if (declared == 0 || context.Features.Get<IHttpRequestBodyDetectionFeature>() is { CanHaveBody: false })
        {
            return new Held(ReadOnlyMemory<byte>.Empty, Partial: false, TooLarge: false);
        }

        var max = spec.MaxRequestBytes;
        if (declared > max && !spec.AllowPartialMessage)
        {
            return new Held(ReadOnlyMemory<byte>.Empty, Partial: true, TooLarge: true);
        }

        // A declared length says whether more follows; otherwise one byte past the limit does.
        var wanted = declared is { } length ? (int)Math.Min(length, max) : max + 1;
        var buffer = ArrayPool<byte>.Shared.Rent(wanted);
        var count = 0;
        try
        {
            while (count < wanted)
            {
                var n = await request.Body.ReadAsync(buffer.AsMemory(count, wanted - count), cancellationToken);
                if (n == 0)
                {
                    break;
                }

                count += n;
            }
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }

        var partial = declared > max || count > max;
        if (partial && !spec.AllowPartialMessage)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            return new Held(ReadOnlyMemory<byte>.Empty, Partial: true, TooLarge: true);
        }

        var body = new CheckedBody(request.Body, buffer, count);
        request.Body = body;
        context.Response.RegisterForDispose(body);
        return new Held(buffer.AsMemory(0, Math.Min(count, max)), partial, TooLarge: false);
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer) =>
        TryReplay(buffer, out var n) ? n : Inner.Read(buffer);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        TryReplay(buffer.Span, out var n) ? new ValueTask<int>(n) : Inner.ReadAsync(buffer, cancellationToken);

    /// <summary>Copies held bytes not yet given out; false once all were, and the reads go to the original body.</summary>
    private bool TryReplay(Span<byte> destination, out int n)
    {
        n = 0;
        if (_position >= _count || _buffer is not { } held || destination.IsEmpty)
        {
            return false;
        }

        n = Math.Min(destination.Length, _count - _position);
        held.AsSpan(_position, n).CopyTo(destination);
        _position += n;
        return true;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        base.Dispose(disposing);
    }
}
