using System.Buffers;
using System.IO.Pipelines;
using Google.Protobuf;
using MeshProxy.Grpc.Internal;
using MeshProxy.Grpc.Tests.Echo;

namespace MeshProxy.Grpc.Tests;

public sealed class FramingTests
{
    // Per test (xunit makes an instance per test): a framing bug must fail, not hang.
    private readonly CancellationToken Timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token;

    private static byte[] Frame(params IMessage[] messages)
    {
        var buffer = new ArrayBufferWriter<byte>();
        foreach (var message in messages)
        {
            MessageFraming.WriteMessage(buffer, message);
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static EchoRequest Msg(string text) => new() { Text = text, Payload = ByteString.CopyFrom(new byte[300]) };

    [Fact]
    public void Writes_flag_big_endian_length_then_message()
    {
        var message = Msg("hi");
        var bytes = Frame(message);
        var size = message.CalculateSize();

        Assert.True(size > 255, "the length must need more than one byte to test the byte order");
        Assert.Equal(new byte[] { 0, 0, 0, (byte)(size >> 8), (byte)size }, bytes[..5]);
        Assert.Equal(message.ToByteArray(), bytes[5..]);
    }

    [Fact]
    public void Empty_message_is_a_header_alone()
    {
        Assert.Equal(new byte[] { 0, 0, 0, 0, 0 }, Frame(new EchoRequest()));
    }

    [Fact]
    public async Task Pipe_reader_assembles_messages_delivered_one_byte_at_a_time()
    {
        var bytes = Frame(Msg("first"), new EchoRequest(), Msg("third"));
        var pipe = new Pipe();
        var reader = new FramedMessageReader<EchoRequest>(pipe.Reader, EchoRequest.Parser, 1024);
        var writing = Task.Run(async () =>
        {
            foreach (var b in bytes)
            {
                await pipe.Writer.WriteAsync(new[] { b }, Timeout);
            }

            await pipe.Writer.CompleteAsync();
        }, Timeout);

        Assert.Equal("first", (await reader.ReadAsync(Timeout))!.Text);
        Assert.Equal(new EchoRequest(), await reader.ReadAsync(Timeout));
        Assert.Equal("third", (await reader.ReadAsync(Timeout))!.Text);
        Assert.Null(await reader.ReadAsync(Timeout));
        await writing;
    }

    [Fact]
    public async Task Stream_reader_assembles_messages_delivered_one_byte_at_a_time()
    {
        var bytes = Frame(Msg("a"), Msg("b"));
        var reader = new FramedMessageReader<EchoRequest>(
            PipeReader.Create(new OneByteStream(bytes)), EchoRequest.Parser, 1024);

        Assert.Equal("a", (await reader.ReadAsync(Timeout))!.Text);
        Assert.Equal("b", (await reader.ReadAsync(Timeout))!.Text);
        Assert.Null(await reader.ReadAsync(Timeout));
    }

    [Fact]
    public async Task Several_messages_in_one_read_come_out_one_by_one()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Frame(Msg("1"), Msg("2"), Msg("3")), Timeout);
        await pipe.Writer.CompleteAsync();
        var reader = new FramedMessageReader<EchoRequest>(pipe.Reader, EchoRequest.Parser, 1024);

        var texts = new List<string>();
        while (await reader.ReadAsync(Timeout) is { } message)
        {
            texts.Add(message.Text);
        }

        Assert.Equal(["1", "2", "3"], texts);
    }

    [Fact]
    public async Task Oversize_message_is_resource_exhausted_from_its_header_alone()
    {
        var pipe = new Pipe();
        // Only the header: the limit must be enforced before the body is buffered.
        await pipe.Writer.WriteAsync(new byte[] { 0, 0, 0x10, 0, 1 }, Timeout);
        var reader = new FramedMessageReader<EchoRequest>(pipe.Reader, EchoRequest.Parser, 1024 * 1024);

        var ex = await Assert.ThrowsAsync<GrpcStatusException>(() => reader.ReadAsync(Timeout).AsTask());
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.Contains("1048577", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Message_exactly_at_the_limit_is_accepted()
    {
        var message = Msg("limit");
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Frame(message), Timeout);
        await pipe.Writer.CompleteAsync();
        var reader = new FramedMessageReader<EchoRequest>(pipe.Reader, EchoRequest.Parser, message.CalculateSize());

        Assert.Equal("limit", (await reader.ReadAsync(Timeout))!.Text);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(20)]
    public async Task Truncated_frame_is_internal(int keep)
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Frame(Msg("cut")).AsMemory(0, keep), Timeout);
        await pipe.Writer.CompleteAsync();
        var reader = new FramedMessageReader<EchoRequest>(pipe.Reader, EchoRequest.Parser, 1024);

        var ex = await Assert.ThrowsAsync<GrpcStatusException>(() => reader.ReadAsync(Timeout).AsTask());
        Assert.Equal(StatusCode.Internal, ex.StatusCode);
        Assert.Contains("incomplete", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Compressed_flag_without_negotiated_encoding_is_internal()
    {
        var bytes = Frame(Msg("z"));
        bytes[0] = 1;
        var reader = new FramedMessageReader<EchoRequest>(PipeReader.Create(new MemoryStream(bytes)), EchoRequest.Parser, 1024);

        var ex = await Assert.ThrowsAsync<GrpcStatusException>(() => reader.ReadAsync(Timeout).AsTask());
        Assert.Equal(StatusCode.Internal, ex.StatusCode);
        Assert.Contains("compressed", ex.Message, StringComparison.Ordinal);
        Assert.Contains("grpc-encoding", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Flag_other_than_0_or_1_is_internal()
    {
        var bytes = Frame(Msg("z"));
        bytes[0] = 7;
        var reader = new FramedMessageReader<EchoRequest>(PipeReader.Create(new MemoryStream(bytes)), EchoRequest.Parser, 1024);

        var ex = await Assert.ThrowsAsync<GrpcStatusException>(() => reader.ReadAsync(Timeout).AsTask());
        Assert.Equal(StatusCode.Internal, ex.StatusCode);
    }

    [Fact]
    public async Task Garbage_payload_is_internal_not_a_crash()
    {
        var bytes = new byte[] { 0, 0, 0, 0, 3, 0xFF, 0xFF, 0xFF };
        var reader = new FramedMessageReader<EchoRequest>(PipeReader.Create(new MemoryStream(bytes)), EchoRequest.Parser, 1024);

        var ex = await Assert.ThrowsAsync<GrpcStatusException>(() => reader.ReadAsync(Timeout).AsTask());
        Assert.Equal(StatusCode.Internal, ex.StatusCode);
    }

    /// <summary>Returns at most one byte per read, like the worst possible network.</summary>
    private sealed class OneByteStream(byte[] data) : Stream
    {
        private int position;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (position == data.Length || buffer.IsEmpty)
            {
                return 0;
            }

            buffer[0] = data[position++];
            return 1;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(Read(buffer.Span));

        public override void Flush() => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
