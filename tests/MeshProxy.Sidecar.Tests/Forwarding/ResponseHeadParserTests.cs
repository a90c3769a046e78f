using System.Text;
using MeshProxy.Sidecar.Forwarding.Http11;

namespace MeshProxy.Sidecar.Tests.Forwarding;

/// <summary>The lean path's strict response parser and chunked decoder, on byte tables: what frames, what is refused.</summary>
public sealed class ResponseHeadParserTests
{
    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "ContentLength", 5L, true)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, "Chunked", 0L, true)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n", 200, "Chunked", 0L, true)]
    [InlineData("HTTP/1.1 200 OK\r\n\r\n", 200, "UntilClose", 0L, false)]
    [InlineData("HTTP/1.1 204 No Content\r\n\r\n", 204, "None", 0L, true)]
    [InlineData("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, "None", 10L, true)]
    [InlineData("HTTP/1.1 100 Continue\r\n\r\n", 100, "None", 0L, true)]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", 200, "ContentLength", 5L, false)]
    [InlineData("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", 200, "ContentLength", 0L, false)]
    [InlineData("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", 200, "ContentLength", 5L, false)]
    [InlineData("HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", 200, "ContentLength", 1L, true)]
    [InlineData("HTTP/1.1 404 \r\nX-Empty:\r\nContent-Length:3   \r\n\r\n", 404, "ContentLength", 3L, true)]
    public void Accepts_well_framed_heads(string text, int status, string framing, long length, bool reusable)
    {
        var bytes = Encoding.Latin1.GetBytes(text);
        var fields = new HeaderField[16];
        var result = ResponseHeadParser.Parse(bytes, headRequest: false, fields, out var head, out var violation);
        Assert.Equal(HeadParseStatus.Complete, result);
        Assert.Equal(FramingViolation.None, violation);
        Assert.Equal(status, head.StatusCode);
        Assert.Equal(framing, head.Framing.ToString());
        Assert.Equal(length, head.ContentLength);
        Assert.Equal(reusable, head.Reusable);
        Assert.Equal(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4, head.Length);
    }

    [Fact]
    public void Fields_are_offsets_with_the_value_trimmed()
    {
        var bytes = Encoding.Latin1.GetBytes("HTTP/1.1 200 OK\r\nServer: \t nginx \t\r\nX-A:b\r\nContent-Length: 0\r\n\r\n");
        var fields = new HeaderField[16];
        Assert.Equal(HeadParseStatus.Complete, ResponseHeadParser.Parse(bytes, false, fields, out var head, out _));
        Assert.Equal(3, head.FieldCount);
        string Name(int i) => Encoding.Latin1.GetString(bytes, fields[i].NameStart, fields[i].NameLength);
        string Value(int i) => Encoding.Latin1.GetString(bytes, fields[i].ValueStart, fields[i].ValueLength);
        Assert.Equal(("Server", "nginx"), (Name(0), Value(0)));
        Assert.Equal(("X-A", "b"), (Name(1), Value(1)));
    }

    [Fact]
    public void An_answer_to_HEAD_has_no_body_whatever_it_declares()
    {
        var bytes = Encoding.Latin1.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        Assert.Equal(HeadParseStatus.Complete, ResponseHeadParser.Parse(bytes, headRequest: true, new HeaderField[4], out var head, out _));
        Assert.Equal(Framing.None, head.Framing);
        Assert.True(head.Reusable);
    }

    [Theory]
    [InlineData("")]
    [InlineData("HTTP/1.1 200 OK")]
    [InlineData("HTTP/1.1 200 OK\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r")]
    public void Waits_for_the_rest_of_a_head(string text)
    {
        var result = ResponseHeadParser.Parse(Encoding.Latin1.GetBytes(text), false, new HeaderField[4], out _, out var violation);
        Assert.Equal(HeadParseStatus.Incomplete, result);
        Assert.Equal(FramingViolation.None, violation);
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "DuplicateContentLength")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", "DuplicateContentLength")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "ContentLengthValue")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", "ContentLengthValue")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n", "ContentLengthValue")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 1 0\r\n\r\n", "ContentLengthValue")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", "ContentLengthValue")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "ContentLengthWithTransferEncoding")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "ContentLengthWithTransferEncoding")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "TransferEncoding")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "TransferEncoding")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n", "TransferEncoding")]
    [InlineData("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "TransferEncoding")]
    [InlineData("HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n", "BareLineBreak")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\n\r\n", "BareLineBreak")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\n", "BareLineBreak")]
    [InlineData("HTTP/1.1 200 OK\r\nX-A: a\rContent-Length: 5\r\n\r\n", "BareLineBreak")]
    [InlineData("HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 5\r\n\r\n", "ObsFold")]
    [InlineData("HTTP/1.1 200 OK\r\nX-A: a\r\n\tContent-Length: 5\r\n\r\n", "ObsFold")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", "HeaderName")]
    [InlineData("HTTP/1.1 200 OK\r\n: 5\r\n\r\n", "HeaderName")]
    [InlineData("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "HeaderName")]
    [InlineData("HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n", "HeaderValue")]
    [InlineData("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "UnexpectedSwitchingProtocols")]
    [InlineData("HTTP/1.2 200 OK\r\n\r\n", "StatusLine")]
    [InlineData("HTTP/2 200 OK\r\n\r\n", "StatusLine")]
    [InlineData("HTTP/1.1 20 OK\r\n\r\n", "StatusLine")]
    [InlineData("HTTP/1.1 600 OK\r\n\r\n", "StatusLine")]
    [InlineData("HTTP/1.1 200OK\r\n\r\n", "StatusLine")]
    [InlineData("ICY 200 OK\r\n\r\n", "StatusLine")]
    public void Refuses_ambiguous_framing(string text, string expected)
    {
        var result = ResponseHeadParser.Parse(Encoding.Latin1.GetBytes(text), false, new HeaderField[16], out _, out var violation);
        Assert.Equal(HeadParseStatus.Invalid, result);
        Assert.Equal(expected, violation.ToString());
    }

    [Fact]
    public void Refuses_more_fields_than_it_has_room_for()
    {
        var text = "HTTP/1.1 200 OK\r\n" + string.Concat(Enumerable.Range(0, 5).Select(i => $"X-{i}: v\r\n")) + "\r\n";
        Assert.Equal(HeadParseStatus.Invalid, ResponseHeadParser.Parse(Encoding.Latin1.GetBytes(text), false, new HeaderField[4], out _, out var violation));
        Assert.Equal(FramingViolation.TooManyFields, violation);
    }

    [Theory]
    [InlineData("5\r\nhello\r\n0\r\n\r\n", "hello", 0)]
    [InlineData("5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\nEXTRA", "hello world", 5)]
    [InlineData("A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n", "0123456789", 0)]
    [InlineData("0\r\n\r\n", "", 0)]
    public void Decodes_chunked_bodies_however_the_bytes_are_split(string text, string body, int left)
    {
        var bytes = Encoding.Latin1.GetBytes(text);
        for (var split = 1; split <= bytes.Length; split++)
        {
            var decoder = default(ChunkedDecoder);
            var output = new List<byte>();
            var at = 0;
            var done = false;
            while (!done && at < bytes.Length)
            {
                var piece = bytes.AsSpan(at, Math.Min(split, bytes.Length - at));
                var status = decoder.Decode(piece, out var consumed, out var offset, out var length, out _);
                Assert.NotEqual(ChunkStatus.Invalid, status);
                output.AddRange(piece.Slice(offset, length).ToArray());
                at += consumed;
                done = status == ChunkStatus.Done;
            }

            Assert.True(done, $"split {split}: not done");
            Assert.Equal(body, Encoding.Latin1.GetString(output.ToArray()));
            Assert.Equal(left, bytes.Length - at);
        }
    }

    [Theory]
    [InlineData("5\nhello\r\n0\r\n\r\n", "BareLineBreak")]
    [InlineData("5\r\nhelloX\r\n0\r\n\r\n", "ChunkDelimiter")]
    [InlineData("5\r\nhello\n0\r\n\r\n", "ChunkDelimiter")]
    [InlineData("\r\nhello\r\n", "ChunkSize")]
    [InlineData(" 5\r\nhello\r\n", "ChunkSize")]
    [InlineData("5 \r\nhello\r\n", "ChunkSize")]
    [InlineData("-5\r\nhello\r\n", "ChunkSize")]
    [InlineData("1000000000000000\r\n", "ChunkSize")]
    [InlineData("0\r\nX-T: a\r\n b\r\n\r\n", "ObsFold")]
    [InlineData("0\r\nX-T: a\n\r\n", "BareLineBreak")]
    [InlineData("0\r\n\n", "HeaderName")]
    public void Refuses_ambiguous_chunks(string text, string expected)
    {
        var decoder = default(ChunkedDecoder);
        var input = Encoding.Latin1.GetBytes(text).AsSpan();
        ChunkStatus status;
        FramingViolation violation;
        do
        {
            status = decoder.Decode(input, out var consumed, out _, out _, out violation);
            input = input[consumed..];
        }
        while (status == ChunkStatus.Data);

        Assert.Equal(ChunkStatus.Invalid, status);
        Assert.Equal(expected, violation.ToString());
    }
}
