using System.Buffers;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on one cleartext port. Kestrel picks a protocol per
/// endpoint and, without TLS's ALPN, serves only HTTP/1.1 on an endpoint that allows both. An app's
/// gRPC client speaks h2c to its sidecar, so we look at the first bytes ourselves: the HTTP/2
/// connection preface ("PRI * HTTP/2.0...") can never start an HTTP/1.1 request. HTTP/2 connections
/// are handed to the connection handler of a second, HTTP/2-only endpoint of the same server; the
/// bytes we looked at stay unread, so each handler sees the connection from its first byte.
/// </summary>
/// <param name="drain">The listener's drain notice, which lists the HTTP/2 connections; null: none.</param>
internal sealed class CleartextProtocolDetection(ListenerDrain? drain = null)
{
    private static readonly byte[] Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();
    private ConnectionDelegate? _http2Handler;

    /// <summary>
    /// Captures the HTTP/2 handler. It must be bound to an endpoint nobody can reach: a Unix socket
    /// whose file we remove right after binding.
    /// </summary>
    public void ConfigureHttp2Endpoint(ListenOptions listen)
    {
        listen.Protocols = HttpProtocols.Http2;
        listen.Use(next =>
        {
            _http2Handler = drain is null ? next : drain.TrackHttp2(next);
            return next;
        });
    }

    /// <summary>Installs the detection on the public endpoint; must be the last connection middleware.</summary>
    public void ConfigurePublicEndpoint(ListenOptions listen)
    {
        listen.Protocols = HttpProtocols.Http1;
        listen.Use(next => async connection =>
        {
            // mTLS (InboundTls ran first): ALPN already said which protocol the client speaks.
            if (connection.Features.Get<ITlsApplicationProtocolFeature>() is { } alpn)
            {
                await (alpn.ApplicationProtocol.Span.SequenceEqual("h2"u8) && _http2Handler is { } tlsH2 ? tlsH2(connection) : next(connection));
                return;
            }

            var http2 = await StartsWithPrefaceAsync(connection);
            if (http2 is null)
            {
                connection.Abort();
                return;
            }

            await (http2.Value && _http2Handler is { } h2 ? h2(connection) : next(connection));
        });
    }

    /// <summary>True for the HTTP/2 preface, false for anything else, null if the client sent nothing in time.</summary>
    private static Task<bool?> StartsWithPrefaceAsync(ConnectionContext connection) =>
        FirstBytes.PeekAsync<bool>(connection, static (buffer, completed) => Classify(buffer) ?? (completed ? false : null));

    internal static bool? Classify(ReadOnlySequence<byte> buffer)
    {
        var length = (int)Math.Min(buffer.Length, Preface.Length);
        Span<byte> head = stackalloc byte[Preface.Length];
        buffer.Slice(0, length).CopyTo(head);
        if (!head[..length].SequenceEqual(Preface.AsSpan(0, length)))
        {
            return false;
        }

        return length == Preface.Length ? true : null;
    }
}
