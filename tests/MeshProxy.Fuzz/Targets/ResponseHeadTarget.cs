using MeshProxy.Sidecar.Forwarding.Http11;

namespace MeshProxy.Fuzz;

/// <summary>
/// The lean upstream path's strict HTTP/1.1 response parser (Forwarding/Http11): a head, then whatever follows as a
/// chunked body. Beyond "no exception": an accepted head ends with CRLF CRLF within the input, has no bare LF,
/// its fields lie inside it, and a chunked body decodes to the same bytes fed whole or one byte at a time.
/// </summary>
internal static class ResponseHeadTarget
{
    private static readonly HeaderField[] Fields = new HeaderField[64];

    public static void Run(ReadOnlySpan<byte> input)
    {
        var headRequest = input.Length > 0 && (input[0] & 1) == 1;
        var status = ResponseHeadParser.Parse(input, headRequest, Fields, out var head, out var violation);
        FuzzTargets.Check(status == HeadParseStatus.Invalid ? violation != FramingViolation.None : violation == FramingViolation.None, $"{status} with {violation}");
        if (status != HeadParseStatus.Complete)
        {
            Chunks(input);
            return;
        }

        FuzzTargets.Check(head.Length >= 4 && head.Length <= input.Length && input[..head.Length].EndsWith("\r\n\r\n"u8), $"head length {head.Length}");
        for (var i = 0; i < head.Length; i++)
        {
            FuzzTargets.Check(input[i] != (byte)'\n' || i > 0 && input[i - 1] == (byte)'\r', $"bare LF at {i} accepted");
        }

        for (var i = 0; i < head.FieldCount; i++)
        {
            var f = Fields[i];
            FuzzTargets.Check(f.NameLength > 0 && f.NameStart + f.NameLength < f.ValueStart + 1 && f.ValueStart + f.ValueLength <= head.Length, $"field {i} out of the head");
        }

        FuzzTargets.Check(head.Framing != Framing.UntilClose || !head.Reusable, "a close-delimited body on a reused connection");
        if (head.Framing == Framing.Chunked)
        {
            Chunks(input[head.Length..]);
        }
    }

    /// <summary>Decodes <paramref name="body"/> whole and byte by byte: both ways must agree on the data, the end and the verdict.</summary>
    private static void Chunks(ReadOnlySpan<byte> body)
    {
        var whole = Decode(body, body.Length, out var wholeStatus, out var wholeEnd);
        var bytewise = Decode(body, 1, out var byteStatus, out var byteEnd);
        FuzzTargets.Check(wholeStatus == byteStatus && wholeEnd == byteEnd, $"whole {wholeStatus} at {wholeEnd}, byte by byte {byteStatus} at {byteEnd}");
        FuzzTargets.Check(whole.AsSpan().SequenceEqual(bytewise), "decoded data differs with the split");
    }

    private static byte[] Decode(ReadOnlySpan<byte> body, int piece, out ChunkStatus last, out int end)
    {
        var decoder = default(ChunkedDecoder);
        var output = new List<byte>();
        var at = 0;
        last = ChunkStatus.NeedMore;
        while (at < body.Length)
        {
            var slice = body.Slice(at, Math.Min(piece, body.Length - at));
            last = decoder.Decode(slice, out var consumed, out var offset, out var length, out _);
            FuzzTargets.Check(consumed >= 0 && consumed <= slice.Length && offset + length <= consumed, "decoder out of its input");
            if (last == ChunkStatus.Invalid)
            {
                break;
            }

            for (var i = 0; i < length; i++)
            {
                output.Add(slice[offset + i]);
            }

            at += consumed;
            if (last == ChunkStatus.Done)
            {
                break;
            }
        }

        end = last == ChunkStatus.Invalid ? -1 : at;
        return [.. output];
    }
}
