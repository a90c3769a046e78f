using System.IO.Pipelines;
using Microsoft.AspNetCore.Http.Features;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Counts a response body of undeclared length on its way to the caller. It wraps the response body
/// FEATURE rather than replacing HttpResponse.Body: replacing the stream makes ASP.NET flush the
/// headers on completion, so a gRPC trailers-only response (grpc-status in a HEADERS frame that ends
/// the stream) would turn into headers plus an empty DATA frame, which gRPC clients reject as INTERNAL.
/// Start and completion pass straight through, so Kestrel frames the response exactly as before.
/// </summary>
internal sealed class CountingResponseBodyFeature(IHttpResponseBodyFeature inner) : IHttpResponseBodyFeature
{
    private CountingStream? _stream;
    private PipeWriter? _writer;

    public long Count => _stream?.Count ?? 0;

    public Stream Stream => _stream ??= new CountingStream(inner.Stream);

    // The forwarder writes through Stream; a writer-based copy would bypass the count, so none is offered.
    // One writer for the response, kept: a local reply written after this feature was put (a body that failed
    // before the response started) writes through HttpResponse.BodyWriter, and a new writer per read lost its
    // buffered bytes (Kestrel then failed the reply with "Content-Length mismatch").
    public PipeWriter Writer => _writer ??= PipeWriter.Create(Stream, new StreamPipeWriterOptions(leaveOpen: true));

    public void DisableBuffering() => inner.DisableBuffering();

    public Task StartAsync(CancellationToken cancellationToken = default) => inner.StartAsync(cancellationToken);

    public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) =>
        inner.SendFileAsync(path, offset, count, cancellationToken);

    public Task CompleteAsync() => inner.CompleteAsync();
}
