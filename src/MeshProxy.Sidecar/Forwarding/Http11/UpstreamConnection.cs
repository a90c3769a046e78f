using System.Net;
using System.Net.Sockets;

namespace MeshProxy.Sidecar.Forwarding.Http11;

/// <summary>
/// One plaintext HTTP/1.1 connection to the app: its socket, a read buffer that holds a response head whole
/// (up to <see cref="MaxHeadBytes"/>, as SocketsHttpHandler's default limit), a write buffer for request heads,
/// the parsed fields of the current head, and one cancellation source reused across its requests (the stream
/// idle timeout on the injected clock, and the caller going away). Used by one request at a time.
/// </summary>
internal sealed class UpstreamConnection : IDisposable
{
    public const int MaxHeadBytes = 64 * 1024;
    public const int MaxFields = 256;
    private const int FirstBufferBytes = 8 * 1024;

    private readonly Socket _socket;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _cancel;
    private int _disposed;

    private UpstreamConnection(Socket socket, IPEndPoint endPoint, TimeProvider time)
    {
        _socket = socket;
        _time = time;
        EndPoint = endPoint;
        _cancel = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
        // Plain arrays, not pooled ones: a receive still pending when another thread closes the connection may
        // write into its buffer, which must then belong to nobody else. One pair per connection, not per request.
        ReadBuffer = new byte[FirstBufferBytes];
        WriteBuffer = new byte[FirstBufferBytes];
    }

    public IPEndPoint EndPoint { get; }

    public byte[] ReadBuffer { get; private set; }

    /// <summary>Unread bytes are ReadBuffer[ReadStart..ReadEnd].</summary>
    public int ReadStart { get; set; }

    public int ReadEnd { get; private set; }

    public byte[] WriteBuffer { get; private set; }

    public HeaderField[] Fields { get; } = new HeaderField[MaxFields];

    /// <summary>Strings of the previous response's field values, by position: reused when the same bytes come again (Server, Content-Type, often Date).</summary>
    public string?[] LastValues { get; } = new string?[16];

    /// <summary>When it went back to the pool (<see cref="TimeProvider.GetTimestamp"/>).</summary>
    public long IdleSince { get; set; }

    public CancellationToken Token => _cancel.Token;

    public static async ValueTask<UpstreamConnection> ConnectAsync(IPEndPoint endPoint, TimeProvider time, TimeSpan timeout, CancellationToken aborted)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(aborted);
            using var timer = time.CreateTimer(static s => ((CancellationTokenSource)s!).Cancel(), limit, timeout, Timeout.InfiniteTimeSpan);
            try
            {
                await socket.ConnectAsync(endPoint, limit.Token);
            }
            catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
            {
                throw new HttpRequestException(HttpRequestError.ConnectionError, $"connect to {endPoint} timed out after {timeout.TotalSeconds:0.#} s", new TimeoutException());
            }

            return new UpstreamConnection(socket, endPoint, time);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// False when the app closed the idle connection or sent bytes nobody asked for: one poll, as SocketsHttpHandler
    /// makes before it reuses a connection, so that a request is not written into a connection already gone.
    /// </summary>
    public bool IsReusable()
    {
        try
        {
            return ReadStart == ReadEnd && !_socket.Poll(0, SelectMode.SelectRead);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Starts a request's use: the caller going away cancels the connection's I/O. Dispose the registration when done.</summary>
    public CancellationTokenRegistration Begin(CancellationToken aborted) =>
        aborted.UnsafeRegister(static s => ((UpstreamConnection)s!).CancelIo(), this);

    /// <summary>A request is done and the connection goes back to the pool: false if its I/O was cancelled (it cannot be reused then).</summary>
    public bool End() => !Disposed && _cancel.TryReset();

    /// <summary>The connection has moved bytes: the stream idle timeout starts again.</summary>
    public void Touch() => _cancel.CancelAfter(UpstreamTransport.StreamIdleTimeout);

    public async ValueTask SendAsync(ReadOnlyMemory<byte> bytes)
    {
        Touch();
        while (!bytes.IsEmpty)
        {
            var sent = await _socket.SendAsync(bytes, SocketFlags.None, _cancel.Token);
            bytes = bytes[sent..];
        }
    }

    /// <summary>
    /// Reads more into the read buffer after what is unread (compacting or growing it when full): 0 at the end of
    /// the stream. The caller passes the count to <see cref="Advance"/>.
    /// </summary>
    public ValueTask<int> ReceiveAsync()
    {
        if (ReadStart == ReadEnd)
        {
            ReadStart = ReadEnd = 0;
        }
        else if (ReadEnd == ReadBuffer.Length)
        {
            if (ReadStart > 0)
            {
                Buffer.BlockCopy(ReadBuffer, ReadStart, ReadBuffer, 0, ReadEnd - ReadStart);
                ReadEnd -= ReadStart;
                ReadStart = 0;
            }
            else
            {
                Grow(ReadEnd * 2);
            }
        }

        Touch();
        return _socket.ReceiveAsync(ReadBuffer.AsMemory(ReadEnd), SocketFlags.None, _cancel.Token);
    }

    /// <summary><paramref name="count"/> bytes were received after what was unread.</summary>
    public void Advance(int count) => ReadEnd += count;

    /// <summary>A bigger write buffer holding what was written so far.</summary>
    public void ReplaceWriteBuffer(byte[] bigger) => WriteBuffer = bigger;

    public bool Disposed => Volatile.Read(ref _disposed) != 0;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // The source is cancelled, not disposed: a request still running on another thread may read its token.
        CancelIo();
        _socket.Dispose();
    }

    private void CancelIo()
    {
        try
        {
            _cancel.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void Grow(int size)
    {
        var bigger = new byte[Math.Min(size, MaxHeadBytes * 2)];
        Buffer.BlockCopy(ReadBuffer, 0, bigger, 0, ReadEnd);
        ReadBuffer = bigger;
    }
}
