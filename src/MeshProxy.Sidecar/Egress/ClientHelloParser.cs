using System.Buffers;
using System.Buffers.Binary;

namespace MeshProxy.Sidecar.Egress;

internal enum ClientHelloStatus
{
    /// <summary>Everything so far is a well-formed beginning of a ClientHello: read more bytes.</summary>
    NeedMore,

    /// <summary>A whole ClientHello was read; its server_name (if any) is known.</summary>
    Complete,

    /// <summary>Not a TLS ClientHello, or a malformed one, or one larger than we are willing to buffer.</summary>
    Invalid,
}

/// <summary>
/// Reads the server name (SNI) out of the first TLS handshake message a client sends, without
/// consuming anything: the caller keeps the bytes and passes them on untouched. Every length is checked
/// against what is actually there, so truncated, oversized or garbage input is Invalid or NeedMore,
/// never an exception. The ClientHello may span several records (RFC 8446 5.1 allows fragmentation).
/// </summary>
internal static class ClientHelloParser
{
    /// <summary>A ClientHello bigger than this is refused (real ones, post-quantum key shares included, stay far below).</summary>
    public const int MaxHandshakeLength = 16 * 1024;

    /// <summary>The most bytes a listener buffers to read one ClientHello: it may be split over records, each with a 5-byte header.</summary>
    public const int MaxBufferedBytes = MaxHandshakeLength + (4 * 1024);

    private const byte HandshakeRecord = 0x16;
    private const byte ClientHelloType = 0x01;
    private const int RecordHeaderLength = 5;
    private const int MaxRecordLength = 16 * 1024;
    private const ushort ServerNameExtension = 0x0000;
    private const byte HostNameType = 0x00;

    public static ClientHelloStatus TryParse(ReadOnlySequence<byte> input, out string? serverName)
    {
        serverName = null;
        var reader = new SequenceReader<byte>(input);

        // Reassemble the handshake message from its records into one bounded buffer.
        var handshake = ArrayPool<byte>.Shared.Rent(MaxHandshakeLength + 4);
        try
        {
            var have = 0;
            var needed = -1; // total handshake bytes (header + body), once the header is known
            while (needed < 0 || have < needed)
            {
                if (reader.Remaining < RecordHeaderLength)
                {
                    return PrefixStatus(reader);
                }

                reader.TryRead(out var type);
                reader.TryRead(out var major);
                reader.TryRead(out _);
                reader.TryReadBigEndian(out short signedLength);
                var recordLength = (ushort)signedLength;
                if (type != HandshakeRecord || major != 0x03 || recordLength == 0 || recordLength > MaxRecordLength)
                {
                    return ClientHelloStatus.Invalid;
                }

                var take = (int)Math.Min(recordLength, reader.Remaining);
                if (have + take > handshake.Length)
                {
                    return ClientHelloStatus.Invalid;
                }

                reader.UnreadSequence.Slice(0, take).CopyTo(handshake.AsSpan(have));
                have += take;
                if (have >= 4 && needed < 0)
                {
                    if (handshake[0] != ClientHelloType)
                    {
                        return ClientHelloStatus.Invalid;
                    }

                    var bodyLength = (handshake[1] << 16) | (handshake[2] << 8) | handshake[3];
                    if (bodyLength > MaxHandshakeLength)
                    {
                        return ClientHelloStatus.Invalid;
                    }

                    needed = bodyLength + 4;
                }

                if (take < recordLength)
                {
                    // The record itself is cut short: its bytes cannot all be here yet.
                    return needed >= 0 && have >= needed ? Parse(handshake.AsSpan(4, needed - 4), out serverName) : ClientHelloStatus.NeedMore;
                }

                reader.Advance(take);
            }

            return Parse(handshake.AsSpan(4, needed - 4), out serverName);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(handshake);
        }
    }

    /// <summary>Fewer than 5 bytes of a record header: NeedMore as long as what is there could start one.</summary>
    private static ClientHelloStatus PrefixStatus(SequenceReader<byte> reader)
    {
        if (reader.TryPeek(out var type) && type != HandshakeRecord)
        {
            return ClientHelloStatus.Invalid;
        }

        if (reader.TryPeek(1, out var major) && major != 0x03)
        {
            return ClientHelloStatus.Invalid;
        }

        return ClientHelloStatus.NeedMore;
    }

    /// <summary>The ClientHello body (RFC 8446 4.1.2; RFC 5246 7.4.1.2 is the same up to the extensions).</summary>
    private static ClientHelloStatus Parse(ReadOnlySpan<byte> body, out string? serverName)
    {
        // The name counts only once the whole message is known to be well-formed: an extension after
        // server_name can still make it Invalid, and an Invalid answer carries no name.
        var status = ParseBody(body, out var name);
        serverName = status == ClientHelloStatus.Complete ? name : null;
        return status;
    }

    private static ClientHelloStatus ParseBody(ReadOnlySpan<byte> body, out string? serverName)
    {
        serverName = null;
        var p = 2 + 32; // legacy_version, random
        if (!Skip(body, ref p, 1, maxLength: 32) ||  // legacy_session_id
            !Skip(body, ref p, 2, maxLength: 65534) || // cipher_suites
            !Skip(body, ref p, 1, maxLength: 255))     // legacy_compression_methods
        {
            return ClientHelloStatus.Invalid;
        }

        if (p == body.Length)
        {
            return ClientHelloStatus.Complete; // an old client without extensions: no SNI
        }

        if (p + 2 > body.Length)
        {
            return ClientHelloStatus.Invalid;
        }

        var extensionsLength = BinaryPrimitives.ReadUInt16BigEndian(body[p..]);
        p += 2;
        if (p + extensionsLength != body.Length)
        {
            return ClientHelloStatus.Invalid;
        }

        var seenServerName = false;
        while (p < body.Length)
        {
            if (p + 4 > body.Length)
            {
                return ClientHelloStatus.Invalid;
            }

            var extensionType = BinaryPrimitives.ReadUInt16BigEndian(body[p..]);
            var extensionLength = BinaryPrimitives.ReadUInt16BigEndian(body[(p + 2)..]);
            p += 4;
            if (p + extensionLength > body.Length)
            {
                return ClientHelloStatus.Invalid;
            }

            if (extensionType == ServerNameExtension)
            {
                // Two server_name extensions could make two parsers disagree on the name: refuse.
                if (seenServerName || !TryReadServerName(body.Slice(p, extensionLength), out serverName))
                {
                    return ClientHelloStatus.Invalid;
                }

                seenServerName = true;
            }

            p += extensionLength;
        }

        return ClientHelloStatus.Complete;
    }

    /// <summary>RFC 6066 3: a list of (type, name); exactly one host_name, a DNS name in ASCII.</summary>
    private static bool TryReadServerName(ReadOnlySpan<byte> extension, out string? serverName)
    {
        serverName = null;
        if (extension.Length < 2 || BinaryPrimitives.ReadUInt16BigEndian(extension) != extension.Length - 2)
        {
            return false;
        }

        var list = extension[2..];
        var p = 0;
        while (p < list.Length)
        {
            if (p + 3 > list.Length)
            {
                return false;
            }

            var nameType = list[p];
            var nameLength = BinaryPrimitives.ReadUInt16BigEndian(list[(p + 1)..]);
            p += 3;
            if (p + nameLength > list.Length)
            {
                return false;
            }

            if (nameType == HostNameType)
            {
                if (serverName is not null || !IsHostName(list.Slice(p, nameLength)))
                {
                    return false;
                }

                serverName = System.Text.Encoding.ASCII.GetString(list.Slice(p, nameLength)).ToLowerInvariant();
            }

            p += nameLength;
        }

        return serverName is not null;
    }

    private static bool IsHostName(ReadOnlySpan<byte> name)
    {
        if (name.Length is 0 or > 253 || name[0] == (byte)'.' || name[^1] == (byte)'.')
        {
            return false;
        }

        foreach (var c in name)
        {
            var ok = c is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9' or (byte)'-' or (byte)'.' or (byte)'_';
            if (!ok)
            {
                return false;
            }
        }

        return true;
    }

    private static bool Skip(ReadOnlySpan<byte> body, ref int p, int lengthBytes, int maxLength)
    {
        if (p + lengthBytes > body.Length)
        {
            return false;
        }

        var length = lengthBytes == 1 ? body[p] : BinaryPrimitives.ReadUInt16BigEndian(body[p..]);
        p += lengthBytes;
        if (length > maxLength || p + length > body.Length)
        {
            return false;
        }

        p += length;
        return true;
    }
}
