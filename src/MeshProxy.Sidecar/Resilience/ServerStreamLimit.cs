using System.Net.Http;
using System.Runtime.CompilerServices;
using MeshProxy.Sidecar.Telemetry;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// The HTTP/2 server's SETTINGS_MAX_CONCURRENT_STREAMS, which SocketsHttpHandler keeps to itself. A cluster
/// with <c>maxConnections</c> can serve at most that many streams per connection times its connections,
/// and beyond that requests wait in the handler's own, unbounded queue; knowing the figure lets the
/// serving gate count those requests as pending instead (bounded by <c>http1MaxPendingRequests</c>). The
/// handler's PlaintextStreamFilter (above TLS, below HTTP/2) wraps each HTTP/2 connection of such a
/// cluster in a <see cref="WatchingStream"/> that reads the server's frames as they pass, without
/// changing a byte, and reports every SETTINGS frame's value to the cluster's state.
/// </summary>
internal static class ServerStreamLimit
{
    /// <summary>The connection's stream, watched when the request that opened it names its cluster.</summary>
    public static Stream Watch(SocketsHttpPlaintextStreamFilterContext context) =>
        context.InitialRequestMessage.Options.TryGetValue(RequestAttempts.ClusterOption, out var cluster)
            ? new WatchingStream(context.PlaintextStream, cluster)
            : context.PlaintextStream;

    /// <summary>
    /// One HTTP/2 connection, read side parsed for SETTINGS frames (RFC 9113 4.1 and 6.5): a 9-byte header
    /// (24-bit length, type, flags, 31-bit stream id), then the payload; SETTINGS is type 0x4 on stream 0,
    /// and unless it is an ACK (flag 0x1) its payload is 6-byte parameters (16-bit id, 32-bit value),
    /// MAX_CONCURRENT_STREAMS being id 0x3. Frames and parameters may be split across reads, so the parser
    /// keeps its place in fields; other frames' payloads are skipped whole. One reader (the handler's frame
    /// loop) reads at a time, so the fields need no synchronization.
    /// </summary>
    internal sealed class WatchingStream(Stream inner, Cluster cluster) : DelegatingStream(inner, leaveOpen: false)
    {
        private const int HeaderSize = 9;
        private const byte SettingsType = 0x4;
        private const byte AckFlag = 0x1;
        private const int ParameterSize = 6;
        private const ushort MaxConcurrentStreams = 0x3;

        private int _headerRead; // header bytes seen of the current frame; HeaderSize while in its payload
        private int _length;
        private byte _type;
        private byte _flags;
        private int _streamId;
        private int _payloadLeft;
        private int _parameterRead;
        private long _parameter; // the 6 bytes of the current parameter, big-endian

        // Pooled: the handler's frame loop reads for as long as the connection lives, and most of its reads
        // complete asynchronously; a plain async ValueTask method would allocate on each of those.
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await Inner.ReadAsync(buffer, cancellationToken);
            Observe(buffer.Span[..read]);
            return read;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(Span<byte> buffer)
        {
            var read = Inner.Read(buffer);
            Observe(buffer[..read]);
            return read;
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        /// <summary>Advances the parser over bytes the handler just read.</summary>
        internal void Observe(ReadOnlySpan<byte> data)
        {
            while (!data.IsEmpty)
            {
                if (_headerRead < HeaderSize)
                {
                    ReadHeaderByte(data[0]);
                    data = data[1..];
                    continue;
                }

                var take = Math.Min(_payloadLeft, data.Length);
                if (IsSettings)
                {
                    foreach (var b in data[..take])
                    {
                        ReadParameterByte(b);
                    }
                }

                data = data[take..];
                _payloadLeft -= take;
                if (_payloadLeft == 0)
                {
                    NextFrame();
                }
            }
        }

        private bool IsSettings => _type == SettingsType && _streamId == 0 && (_flags & AckFlag) == 0;

        private void ReadHeaderByte(byte b)
        {
            switch (_headerRead)
            {
                case < 3:
                    _length = (_length << 8) | b;
                    break;
                case 3:
                    _type = b;
                    break;
                case 4:
                    _flags = b;
                    break;
                default:
                    _streamId = ((_streamId << 8) | b) & 0x7FFFFFFF; // the high bit is reserved
                    break;
            }

            if (++_headerRead == HeaderSize)
            {
                _payloadLeft = _length;
                _parameterRead = 0;
                if (_payloadLeft == 0)
                {
                    NextFrame();
                }
            }
        }

        private void ReadParameterByte(byte b)
        {
            _parameter = (_parameter << 8) | b;
            if (++_parameterRead < ParameterSize)
            {
                return;
            }

            if ((ushort)(_parameter >> 32) == MaxConcurrentStreams)
            {
                cluster.State.ObserveServerStreams((uint)_parameter, cluster.Policy.Limits);
            }

            _parameterRead = 0;
            _parameter = 0;
        }

        private void NextFrame()
        {
            _headerRead = 0;
            _length = 0;
            _streamId = 0;
        }
    }
}
