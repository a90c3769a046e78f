namespace MeshProxy.Sidecar.Forwarding.Http11;

internal enum ChunkStatus
{
    /// <summary>All input consumed; more is needed.</summary>
    NeedMore,

    /// <summary>A run of body bytes at the given offset; the caller passes them on and calls again with the rest.</summary>
    Data,

    /// <summary>The last chunk and the trailer section are read: the body ended at <c>consumed</c>.</summary>
    Done,

    Invalid,
}

/// <summary>
/// A strict decoder of the chunked transfer coding (RFC 9112 7.1), fed the bytes as they arrive. Refused: a size
/// that is not 1 to 15 hex digits, anything between the size and its line end other than a chunk extension
/// starting with ';', a bare LF or CR, data not followed by CRLF, obs-fold or a control byte in the trailer
/// section, and a trailer section over 16 KiB. Trailer fields are read and dropped (the lean path serves HTTP/1.1
/// callers, to whom Kestrel sends no trailers). Pure and allocation-free; a struct the caller keeps per body.
/// </summary>
internal struct ChunkedDecoder
{
    private const int MaxTrailerBytes = 16 * 1024;

    private DecoderState _state;
    private long _remaining;
    private int _digits;
    private int _trailerBytes;

    private enum DecoderState
    {
        Size,
        Extension,
        SizeLf,
        Data,
        DataCr,
        DataLf,
        TrailerStart,
        Trailer,
        TrailerLf,
        FinalLf,
        Done,
    }

    /// <summary>
    /// Decodes from <paramref name="input"/>: <paramref name="consumed"/> bytes were used (including any data run
    /// returned, at <paramref name="dataOffset"/> with <paramref name="dataLength"/> bytes).
    /// </summary>
    public ChunkStatus Decode(ReadOnlySpan<byte> input, out int consumed, out int dataOffset, out int dataLength, out FramingViolation violation)
    {
        dataOffset = 0;
        dataLength = 0;
        violation = FramingViolation.None;
        var i = 0;
        while (i < input.Length)
        {
            var b = input[i];
            switch (_state)
            {
                case DecoderState.Size:
                    var digit = HexValue(b);
                    if (digit >= 0)
                    {
                        if (++_digits > 15)
                        {
                            return Refuse(FramingViolation.ChunkSize, i, out consumed, out violation);
                        }

                        _remaining = (_remaining << 4) | (uint)digit;
                    }
                    else if (_digits > 0 && b == (byte)';')
                    {
                        _state = DecoderState.Extension;
                    }
                    else if (_digits > 0 && b == (byte)'\r')
                    {
                        _state = DecoderState.SizeLf;
                    }
                    else
                    {
                        return Refuse(b == (byte)'\n' ? FramingViolation.BareLineBreak : FramingViolation.ChunkSize, i, out consumed, out violation);
                    }

                    break;
                case DecoderState.Extension:
                    if (b == (byte)'\r')
                    {
                        _state = DecoderState.SizeLf;
                    }
                    else if (b < 0x20 && b != (byte)'\t' || b == 0x7F)
                    {
                        return Refuse(b == (byte)'\n' ? FramingViolation.BareLineBreak : FramingViolation.ChunkSize, i, out consumed, out violation);
                    }

                    break;
                case DecoderState.SizeLf:
                    if (b != (byte)'\n')
                    {
                        return Refuse(FramingViolation.BareLineBreak, i, out consumed, out violation);
                    }

                    _state = _remaining == 0 ? DecoderState.TrailerStart : DecoderState.Data;
                    break;
                case DecoderState.Data:
                    var run = (int)Math.Min(_remaining, input.Length - i);
                    _remaining -= run;
                    if (_remaining == 0)
                    {
                        _state = DecoderState.DataCr;
                    }

                    dataOffset = i;
                    dataLength = run;
                    consumed = i + run;
                    return ChunkStatus.Data;
                case DecoderState.DataCr:
                    if (b != (byte)'\r')
                    {
                        return Refuse(FramingViolation.ChunkDelimiter, i, out consumed, out violation);
                    }

                    _state = DecoderState.DataLf;
                    break;
                case DecoderState.DataLf:
                    if (b != (byte)'\n')
                    {
                        return Refuse(FramingViolation.ChunkDelimiter, i, out consumed, out violation);
                    }

                    _state = DecoderState.Size;
                    _digits = 0;
                    break;
                case DecoderState.TrailerStart:
                    if (b == (byte)'\r')
                    {
                        _state = DecoderState.FinalLf;
                    }
                    else if (b is (byte)' ' or (byte)'\t')
                    {
                        return Refuse(FramingViolation.ObsFold, i, out consumed, out violation);
                    }
                    else if (!ResponseHeadParser.IsTokenChar(b))
                    {
                        return Refuse(FramingViolation.HeaderName, i, out consumed, out violation);
                    }
                    else
                    {
                        _state = DecoderState.Trailer;
                    }

                    break;
                case DecoderState.Trailer:
                    if (b == (byte)'\r')
                    {
                        _state = DecoderState.TrailerLf;
                    }
                    else if (b < 0x20 && b != (byte)'\t' || b == 0x7F)
                    {
                        return Refuse(b == (byte)'\n' ? FramingViolation.BareLineBreak : FramingViolation.HeaderValue, i, out consumed, out violation);
                    }

                    break;
                case DecoderState.TrailerLf:
                    if (b != (byte)'\n')
                    {
                        return Refuse(FramingViolation.BareLineBreak, i, out consumed, out violation);
                    }

                    _state = DecoderState.TrailerStart;
                    break;
                case DecoderState.FinalLf:
                    if (b != (byte)'\n')
                    {
                        return Refuse(FramingViolation.BareLineBreak, i, out consumed, out violation);
                    }

                    _state = DecoderState.Done;
                    consumed = i + 1;
                    return ChunkStatus.Done;
                default:
                    consumed = i;
                    return ChunkStatus.Done;
            }

            if (_state >= DecoderState.TrailerStart && ++_trailerBytes > MaxTrailerBytes)
            {
                return Refuse(FramingViolation.TrailerTooLarge, i, out consumed, out violation);
            }

            i++;
        }

        consumed = i;
        return _state == DecoderState.Done ? ChunkStatus.Done : ChunkStatus.NeedMore;
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    private static ChunkStatus Refuse(FramingViolation why, int at, out int consumed, out FramingViolation violation)
    {
        consumed = at;
        violation = why;
        return ChunkStatus.Invalid;
    }
}
