using System.Buffers;
using System.Net.Security;
using MeshProxy.Sidecar.Egress;

namespace MeshProxy.Sidecar.Tests.Egress;

/// <summary>The SNI reader against real ClientHellos (written by .NET's TLS stack), cut, split and mangled.</summary>
public sealed class ClientHelloParserTests
{
    [Fact]
    public async Task A_real_client_hello_yields_its_server_name_lowercased()
    {
        var hello = await CaptureClientHelloAsync("API.Example.Test");
        Assert.Equal(ClientHelloStatus.Complete, ClientHelloParser.TryParse(new ReadOnlySequence<byte>(hello), out var sni));
        Assert.Equal("api.example.test", sni);
    }

    [Fact]
    public async Task A_client_hello_without_sni_is_complete_with_no_name()
    {
        // .NET sends no server_name for an IP literal (RFC 6066 forbids it).
        var hello = await CaptureClientHelloAsync("127.0.0.1");
        Assert.Equal(ClientHelloStatus.Complete, ClientHelloParser.TryParse(new ReadOnlySequence<byte>(hello), out var sni));
        Assert.Null(sni);
    }

    [Fact]
    public async Task Every_truncation_asks_for_more_and_never_throws()
    {
        var hello = await CaptureClientHelloAsync("allowed.test");
        for (var length = 0; length < hello.Length; length++)
        {
            Assert.Equal(ClientHelloStatus.NeedMore, ClientHelloParser.TryParse(new ReadOnlySequence<byte>(hello, 0, length), out var sni));
            Assert.Null(sni);
        }
    }

    [Fact]
    public async Task A_client_hello_split_over_records_and_segments_is_reassembled()
    {
        var hello = await CaptureClientHelloAsync("split.example.test");
        var handshake = hello.AsSpan(5).ToArray();
        var cut = handshake.Length / 3;
        byte[] fragmented = [.. Record(handshake[..cut]), .. Record(handshake[cut..])];

        // And delivered in many small pieces, as a socket might.
        var sequence = Segments(fragmented, 7);
        Assert.Equal(ClientHelloStatus.Complete, ClientHelloParser.TryParse(sequence, out var sni));
        Assert.Equal("split.example.test", sni);
    }

    [Theory]
    [InlineData(new byte[] { 0x47, 0x45, 0x54, 0x20 })]             // "GET "
    [InlineData(new byte[] { 0x16, 0x02 })]                         // not TLS 1.x
    [InlineData(new byte[] { 0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5 })] // application data first
    [InlineData(new byte[] { 0x16, 0x03, 0x01, 0x00, 0x00 })]       // empty record
    [InlineData(new byte[] { 0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00 })] // ServerHello, not ClientHello
    [InlineData(new byte[] { 0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xFF, 0xFF, 0xFF })] // 16 MiB ClientHello claimed
    public void Garbage_is_invalid(byte[] input)
    {
        Assert.Equal(ClientHelloStatus.Invalid, ClientHelloParser.TryParse(new ReadOnlySequence<byte>(input), out var sni));
        Assert.Null(sni);
    }

    [Fact]
    public async Task Lengths_that_lie_are_invalid_not_exceptions()
    {
        var hello = await CaptureClientHelloAsync("allowed.test");

        // The handshake body claims to be shorter than its record: the extensions overrun it.
        var shorter = (byte[])hello.Clone();
        var claimed = ((shorter[6] << 16) | (shorter[7] << 8) | shorter[8]) - 10;
        (shorter[6], shorter[7], shorter[8]) = ((byte)(claimed >> 16), (byte)(claimed >> 8), (byte)claimed);
        var status = ClientHelloParser.TryParse(new ReadOnlySequence<byte>(shorter), out _);
        Assert.Equal(ClientHelloStatus.Invalid, status);

        // A name with a character DNS does not allow.
        var name = hello.AsSpan().IndexOf("allowed.test"u8);
        var bad = (byte[])hello.Clone();
        bad[name] = (byte)'/';
        Assert.Equal(ClientHelloStatus.Invalid, ClientHelloParser.TryParse(new ReadOnlySequence<byte>(bad), out var sni));
        Assert.Null(sni);
    }

    [Fact]
    public async Task A_malformed_extension_after_the_server_name_leaves_no_name()
    {
        // Found by the clienthello fuzz target: the name was read, then a later extension made the
        // message Invalid, and the name was still handed out with the Invalid answer.
        var hello = await CaptureClientHelloAsync("named.example.test");
        byte[] truncatedExtension = [0x00, 0x15, 0x00]; // three bytes of a four-byte extension header
        var longer = WithExtensionBytes(hello, truncatedExtension);

        Assert.Equal(ClientHelloStatus.Invalid, ClientHelloParser.TryParse(new ReadOnlySequence<byte>(longer), out var sni));
        Assert.Null(sni);
    }

    [Fact]
    public async Task Random_mutations_never_throw()
    {
        var hello = await CaptureClientHelloAsync("fuzz.example.test");
        var random = new Random(5);
        for (var i = 0; i < 20_000; i++)
        {
            var mutated = (byte[])hello.Clone();
            for (var flips = random.Next(1, 8); flips > 0; flips--)
            {
                mutated[random.Next(mutated.Length)] = (byte)random.Next(256);
            }

            var length = random.Next(2) == 0 ? mutated.Length : random.Next(mutated.Length);
            var status = ClientHelloParser.TryParse(Segments(mutated[..length], random.Next(1, 64)), out var sni);
            Assert.True(status != ClientHelloStatus.Complete || sni is null || sni.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_'));
        }

        var noise = new byte[4096];
        for (var i = 0; i < 5_000; i++)
        {
            random.NextBytes(noise);
            noise[0] = 0x16;
            noise[1] = 0x03;
            _ = ClientHelloParser.TryParse(new ReadOnlySequence<byte>(noise, 0, random.Next(noise.Length)), out _);
        }
    }

    /// <summary>Lets SslStream write its first flight into memory, then ends the stream so the handshake stops there.</summary>
    internal static async Task<byte[]> CaptureClientHelloAsync(string targetHost)
    {
        var capture = new FirstFlightStream();
        await using var tls = new SslStream(capture);
        // The stream ends before any certificate arrives, so validation never runs.
        await Assert.ThrowsAnyAsync<Exception>(() => tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = targetHost }));
        return capture.Written.ToArray();
    }

    /// <summary>A one-record ClientHello with <paramref name="extra"/> appended to its extensions, every length in front adjusted.</summary>
    private static byte[] WithExtensionBytes(byte[] hello, byte[] extra)
    {
        var p = 5 + 4 + 2 + 32; // record header, handshake header, legacy_version, random
        p += 1 + hello[p];                          // legacy_session_id
        p += 2 + ((hello[p] << 8) | hello[p + 1]);  // cipher_suites
        p += 1 + hello[p];                          // legacy_compression_methods
        byte[] longer = [.. hello, .. extra];
        void Add(int at, int bytes)
        {
            var value = 0;
            for (var i = 0; i < bytes; i++)
            {
                value = (value << 8) | longer[at + i];
            }

            value += extra.Length;
            for (var i = bytes - 1; i >= 0; i--, value >>= 8)
            {
                longer[at + i] = (byte)value;
            }
        }

        Add(3, 2); // record length
        Add(6, 3); // handshake length
        Add(p, 2); // extensions length
        return longer;
    }

    private static byte[] Record(byte[] fragment) =>
        [0x16, 0x03, 0x01, (byte)(fragment.Length >> 8), (byte)fragment.Length, .. fragment];

    private static ReadOnlySequence<byte> Segments(byte[] data, int size)
    {
        if (data.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var first = new Segment(data.AsMemory(0, Math.Min(size, data.Length)), 0);
        var last = first;
        for (var offset = size; offset < data.Length; offset += size)
        {
            last = last.Append(data.AsMemory(offset, Math.Min(size, data.Length - offset)));
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    private sealed class FirstFlightStream : Stream
    {
        public MemoryStream Written { get; } = new();

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => 0;

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(0);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Written.Write(buffer, offset, count);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Written.Write(buffer.Span);
            return ValueTask.CompletedTask;
        }
    }
}
