using System.Buffers;
using MeshProxy.Sidecar.Egress;
using Microsoft.AspNetCore.Connections;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>What an inbound connection opened with.</summary>
internal enum InboundOpening
{
    /// <summary>A whole, well-formed TLS ClientHello.</summary>
    Tls,

    /// <summary>Anything whose first byte cannot start a TLS record: HTTP/1.1, the HTTP/2 preface, or other plaintext.</summary>
    Plaintext,

    /// <summary>Starts like TLS but is no well-formed ClientHello (or a larger one than we buffer): neither TLS nor plaintext.</summary>
    Malformed,

    /// <summary>The client sent nothing before it closed or the first-bytes timeout.</summary>
    Nothing,
}

/// <summary>
/// TLS or plaintext on one port, from the first bytes, consumed by nobody: a TLS record carrying a handshake starts
/// with 0x16, which no HTTP request (a method's letters, or the HTTP/2 preface's 'P') ever does. A connection that
/// starts so is TLS only once the egress listener's ClientHello reader (<see cref="ClientHelloParser"/>) has a whole,
/// well-formed ClientHello, so the handshake (and its rate-limit token) is spent on nothing less; the window is
/// bounded by <see cref="ClientHelloParser.MaxBufferedBytes"/> and <see cref="KestrelLimits.FirstBytesTimeout"/>.
/// </summary>
internal static class InboundDetection
{
    /// <summary>The first byte of a TLS record carrying a handshake message (RFC 8446 5.1, content type 22).</summary>
    private const byte TlsHandshakeRecord = 0x16;

    /// <summary>Reads until the opening is known; every byte stays unread for whoever handles the connection next.</summary>
    /// <param name="window">A shorter wait than the first-bytes timeout (a TCP port under PERMISSIVE, whose plaintext client may wait for a banner), on <paramref name="time"/>.</param>
    public static async Task<InboundOpening> ReadAsync(ConnectionContext connection, TimeSpan? window = null, TimeProvider? time = null) =>
        await FirstBytes.PeekAsync<InboundOpening>(connection, static (buffer, completed) => Classify(buffer, completed), window, time) ?? InboundOpening.Nothing;

    /// <summary>The opening of <paramref name="buffer"/>, or null while more bytes could still decide it.</summary>
    /// <param name="completed">The client has finished sending: no more bytes will come.</param>
    internal static InboundOpening? Classify(ReadOnlySequence<byte> buffer, bool completed)
    {
        if (buffer.IsEmpty)
        {
            return completed ? InboundOpening.Nothing : null;
        }

        if (buffer.FirstSpan[0] != TlsHandshakeRecord)
        {
            return InboundOpening.Plaintext;
        }

        return ClientHelloParser.TryParse(buffer, out _) switch
        {
            ClientHelloStatus.Complete => InboundOpening.Tls,
            ClientHelloStatus.NeedMore when !completed && buffer.Length < ClientHelloParser.MaxBufferedBytes => null,
            _ => InboundOpening.Malformed,
        };
    }
}
