using System.Text;

namespace MeshProxy.Sidecar.Forwarding.Http11;

/// <summary>How the body of a parsed response is delimited.</summary>
internal enum Framing
{
    /// <summary>No body: 1xx, 204, 304, or the answer to HEAD.</summary>
    None,
    ContentLength,
    Chunked,

    /// <summary>Neither length nor chunked: the body runs to the end of the connection, which is then not reused.</summary>
    UntilClose,
}

/// <summary>Why a response head (or a chunked body) was refused: each one a way two parsers could disagree on where a message ends.</summary>
internal enum FramingViolation
{
    None,
    StatusLine,
    BareLineBreak,
    ObsFold,
    HeaderName,
    HeaderValue,
    DuplicateContentLength,
    ContentLengthValue,
    ContentLengthWithTransferEncoding,
    TransferEncoding,
    UnexpectedSwitchingProtocols,
    TooManyFields,
    HeadTooLarge,
    ChunkSize,
    ChunkDelimiter,
    TrailerTooLarge,
}

internal enum HeadParseStatus
{
    Incomplete,
    Complete,
    Invalid,
}

/// <summary>One header field of a parsed head, as offsets into the buffer it was parsed from (value without its surrounding whitespace).</summary>
internal readonly record struct HeaderField(int NameStart, int NameLength, int ValueStart, int ValueLength);

/// <summary>What the strict parser made of a response head.</summary>
internal struct ResponseHead
{
    public int StatusCode;
    public Framing Framing;
    public long ContentLength;

    /// <summary>The connection may carry another request once this response's body is read to its end.</summary>
    public bool Reusable;

    /// <summary>A Connection field was present: the fields it nominates are hop-by-hop (RFC 9110 7.6.1).</summary>
    public bool HasConnectionField;

    /// <summary>Bytes of the head, status line to the empty line inclusive.</summary>
    public int Length;

    public int FieldCount;
}

/// <summary>
/// A strict HTTP/1.1 response head parser (RFC 9112) for the lean upstream path. Where the RFC lets a recipient
/// choose between tolerating and refusing something that lets two parsers frame a message differently, this
/// refuses it: a bare LF or CR, obs-fold (a field line starting with whitespace), whitespace between a field name
/// and its colon, a Content-Length that is not one plain decimal number, two Content-Length fields (even equal),
/// Content-Length with Transfer-Encoding, any transfer coding other than a lone "chunked" (or any on HTTP/1.0),
/// control characters in a value, and a 101 that was never asked for. A refused head fails the attempt and its
/// connection is closed, never reused. Pure: no I/O, no allocation; the caller keeps the bytes.
/// </summary>
internal static class ResponseHeadParser
{
    private static ReadOnlySpan<byte> ContentLengthName => "content-length"u8;

    private static ReadOnlySpan<byte> TransferEncodingName => "transfer-encoding"u8;

    private static ReadOnlySpan<byte> ConnectionName => "connection"u8;

    /// <summary>
    /// Parses the head at the start of <paramref name="buffer"/>. <paramref name="fields"/> receives the fields
    /// (its length is the most accepted). Incomplete: no empty line yet, and nothing refused so far.
    /// </summary>
    public static HeadParseStatus Parse(ReadOnlySpan<byte> buffer, bool headRequest, Span<HeaderField> fields, out ResponseHead head, out FramingViolation violation)
    {
        head = default;
        violation = FramingViolation.None;
        var contentLengths = 0;
        var transferEncodings = 0;
        var close = false;

        // The status line.
        var status = NextLine(buffer, 0, out var line, ref violation);
        if (status != HeadParseStatus.Complete)
        {
            return status;
        }

        if (!TryStatusLine(buffer[..line], out var minor, out head.StatusCode))
        {
            return Refuse(FramingViolation.StatusLine, out violation);
        }

        var position = line + 2;
        while (true)
        {
            status = NextLine(buffer, position, out line, ref violation);
            if (status != HeadParseStatus.Complete)
            {
                return status;
            }

            if (line == position)
            {
                position += 2;
                break; // the empty line: end of the head
            }

            var first = buffer[position];
            if (first is (byte)' ' or (byte)'\t')
            {
                return Refuse(FramingViolation.ObsFold, out violation);
            }

            var colon = position;
            while (colon < line && IsTokenChar(buffer[colon]))
            {
                colon++;
            }

            // A name is one or more token characters followed at once by ':' ("Name : v" is refused, RFC 9112 5.1).
            if (colon == position || colon == line || buffer[colon] != (byte)':')
            {
                return Refuse(FramingViolation.HeaderName, out violation);
            }

            var valueStart = colon + 1;
            var valueEnd = line;
            while (valueStart < valueEnd && buffer[valueStart] is (byte)' ' or (byte)'\t')
            {
                valueStart++;
            }

            while (valueEnd > valueStart && buffer[valueEnd - 1] is (byte)' ' or (byte)'\t')
            {
                valueEnd--;
            }

            var value = buffer[valueStart..valueEnd];
            if (!IsFieldValue(value))
            {
                return Refuse(FramingViolation.HeaderValue, out violation);
            }

            if (head.FieldCount == fields.Length)
            {
                return Refuse(FramingViolation.TooManyFields, out violation);
            }

            var name = buffer[position..colon];
            fields[head.FieldCount++] = new HeaderField(position, colon - position, valueStart, valueEnd - valueStart);
            if (name.Length == ContentLengthName.Length && Ascii.EqualsIgnoreCase(name, ContentLengthName))
            {
                if (++contentLengths > 1)
                {
                    return Refuse(FramingViolation.DuplicateContentLength, out violation);
                }

                if (!TryDecimal(value, out head.ContentLength))
                {
                    return Refuse(FramingViolation.ContentLengthValue, out violation);
                }
            }
            else if (name.Length == TransferEncodingName.Length && Ascii.EqualsIgnoreCase(name, TransferEncodingName))
            {
                // Only a lone "chunked": a list ("gzip, chunked"), a repeat, or another coding is where proxies have disagreed.
                if (++transferEncodings > 1 || !Ascii.EqualsIgnoreCase(value, "chunked"u8))
                {
                    return Refuse(FramingViolation.TransferEncoding, out violation);
                }
            }
            else if (name.Length == ConnectionName.Length && Ascii.EqualsIgnoreCase(name, ConnectionName))
            {
                head.HasConnectionField = true;
                close |= HasToken(value, "close"u8);
            }

            position = line + 2;
        }

        head.Length = position;
        if (head.StatusCode == 101)
        {
            // The lean path never sends Upgrade: a switch it did not ask for has no framing it could trust.
            return Refuse(FramingViolation.UnexpectedSwitchingProtocols, out violation);
        }

        if (contentLengths > 0 && transferEncodings > 0)
        {
            return Refuse(FramingViolation.ContentLengthWithTransferEncoding, out violation);
        }

        if (transferEncodings > 0 && minor == 0)
        {
            return Refuse(FramingViolation.TransferEncoding, out violation);
        }

        head.Framing = head.StatusCode < 200 || head.StatusCode is 204 or 304 || headRequest ? Framing.None
            : transferEncodings > 0 ? Framing.Chunked
            : contentLengths > 0 ? Framing.ContentLength
            : Framing.UntilClose;

        // HTTP/1.0 keep-alive is not worth its ambiguity here: such a connection is used once.
        head.Reusable = minor == 1 && !close && head.Framing != Framing.UntilClose;
        return HeadParseStatus.Complete;
    }

    /// <summary>True for a byte of a field name (RFC 9110 tchar).</summary>
    public static bool IsTokenChar(byte b) =>
        b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9' ||
        b is (byte)'!' or (byte)'#' or (byte)'$' or (byte)'%' or (byte)'&' or (byte)'\'' or (byte)'*' or (byte)'+' or
            (byte)'-' or (byte)'.' or (byte)'^' or (byte)'_' or (byte)'`' or (byte)'|' or (byte)'~';

    /// <summary>True when every byte is HTAB, SP, visible ASCII or obs-text (RFC 9110 5.5): no CR, LF, NUL or other control.</summary>
    public static bool IsFieldValue(ReadOnlySpan<byte> value)
    {
        foreach (var b in value)
        {
            if (b < 0x20 && b != (byte)'\t' || b == 0x7F)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>True when the comma-separated <paramref name="value"/> has <paramref name="token"/> as one of its members (case-insensitive).</summary>
    public static bool HasToken(ReadOnlySpan<byte> value, ReadOnlySpan<byte> token)
    {
        while (!value.IsEmpty)
        {
            var comma = value.IndexOf((byte)',');
            var member = (comma < 0 ? value : value[..comma]).Trim(" \t"u8);
            if (Ascii.EqualsIgnoreCase(member, token))
            {
                return true;
            }

            value = comma < 0 ? default : value[(comma + 1)..];
        }

        return false;
    }

    /// <summary>1 to 18 decimal digits, nothing else (no sign, no list, no whitespace inside).</summary>
    public static bool TryDecimal(ReadOnlySpan<byte> value, out long result)
    {
        result = 0;
        if (value.IsEmpty || value.Length > 18)
        {
            return false;
        }

        foreach (var b in value)
        {
            if (b is < (byte)'0' or > (byte)'9')
            {
                return false;
            }

            result = result * 10 + (b - '0');
        }

        return true;
    }

    /// <summary>The next line from <paramref name="start"/>: <paramref name="end"/> is the index of its CR. Refuses a bare LF and a CR not followed by LF.</summary>
    private static HeadParseStatus NextLine(ReadOnlySpan<byte> buffer, int start, out int end, ref FramingViolation violation)
    {
        end = -1;
        var rest = buffer[start..];
        var lf = rest.IndexOf((byte)'\n');
        var cr = (lf < 0 ? rest : rest[..lf]).IndexOf((byte)'\r');
        if (cr >= 0 && cr + 1 < rest.Length && rest[cr + 1] != (byte)'\n')
        {
            return Refuse(FramingViolation.BareLineBreak, out violation); // a lone CR frames lines differently in other parsers too
        }

        if (lf < 0)
        {
            return HeadParseStatus.Incomplete;
        }

        if (lf == 0 || rest[lf - 1] != (byte)'\r')
        {
            return Refuse(FramingViolation.BareLineBreak, out violation);
        }

        end = start + lf - 1;
        return HeadParseStatus.Complete;
    }

    /// <summary>"HTTP/1.x SP 3DIGIT [SP reason]", the code 100 to 599, the reason without controls.</summary>
    private static bool TryStatusLine(ReadOnlySpan<byte> line, out int minor, out int code)
    {
        minor = 0;
        code = 0;
        if (line.Length < 12 || !line.StartsWith("HTTP/1."u8) || line[7] is not ((byte)'0' or (byte)'1') || line[8] != (byte)' ')
        {
            return false;
        }

        minor = line[7] - '0';
        for (var i = 9; i < 12; i++)
        {
            if (line[i] is < (byte)'0' or > (byte)'9')
            {
                return false;
            }

            code = code * 10 + (line[i] - '0');
        }

        return code is >= 100 and <= 599 && (line.Length == 12 || line[12] == (byte)' ' && IsFieldValue(line[13..]));
    }

    private static HeadParseStatus Refuse(FramingViolation why, out FramingViolation violation)
    {
        violation = why;
        return HeadParseStatus.Invalid;
    }
}
