using System.Buffers;
using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Threading.Channels;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// What one access log line says. A struct of references the request already holds (strings Kestrel
/// made, the snapshot's cluster and endpoint objects): queuing it copies, formatting happens on the
/// writer's thread.
/// </summary>
internal readonly record struct AccessLogEntry(
    DateTime StartTime,
    string Direction,
    string Method,
    string Path,
    string QueryString,
    string Protocol,
    int ResponseCode,
    ResponseFlags Flags,
    long BytesReceived,
    long BytesSent,
    double DurationMs,
    double UpstreamServiceTimeMs,
    UpstreamEndpoint? UpstreamHost,
    string? UpstreamCluster,
    string? RouteName,
    string? RequestId,
    string? Authority,
    string? UserAgent,
    string? ForwardedFor,
    IPAddress? RemoteAddress,
    int RemotePort,
    string? PeerPrincipal);

/// <summary>
/// One JSON line per request, written by a background thread so that a request never waits for a
/// disk or a pipe. Requests hand their entry to a bounded queue; when the queue is full (the target
/// is slow or blocked) the entry is dropped and counted, never waited for. The writer is not woken per
/// line: it writes what has queued every <see cref="FlushInterval"/>, or sooner once half a batch is
/// waiting, so a line reaches its target within that interval while a busy sidecar pays one thread
/// switch per hundreds of requests rather than one per request.
/// </summary>
internal sealed class AccessLog : IDisposable
{
    public const int DefaultCapacity = 8192;

    /// <summary>The longest a queued line waits for the writer when traffic is light.</summary>
    public static readonly TimeSpan FlushInterval = TimeSpan.FromMilliseconds(100);

    private const string Stdout = "/dev/stdout";
    private const int BatchLines = 512;

    // Queued lines that wake the writer before its interval: half a batch, so that under heavy traffic
    // the queue is drained long before it fills (8192 lines at 50k req/s is 160 ms).
    private const int WakeAt = BatchLines / 2;

    private static readonly JsonWriterOptions WriterOptions = new() { SkipValidation = true };
    private readonly Channel<AccessLogEntry> _queue;
    private readonly Func<string?> _path;
    private readonly ProxyMetrics _metrics;
    private readonly ILogger _logger;
    private readonly Thread _writer;
    private readonly ManualResetEventSlim _wake = new(initialState: false, spinCount: 1);
    private readonly ArrayBufferWriter<byte> _buffer = new(64 * 1024);
    private Stream? _target;
    private string? _targetPath;
    private int _pending; // lines queued and not yet taken by the writer: decides the early wake only

    /// <param name="path">Read by the writer before each batch: the configured target, or null when logging is off.</param>
    public AccessLog(Func<string?> path, ProxyMetrics metrics, ILogger logger, int capacity = DefaultCapacity)
    {
        _path = path;
        _metrics = metrics;
        _logger = logger;
        _queue = Channel.CreateBounded<AccessLogEntry>(
            new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true, SingleWriter = false },
            _ => metrics.AccessLogDropped.Inc());

        // A thread of its own: a write to a blocked pipe or a stalled disk holds this thread only,
        // never one of the thread pool's that requests run on.
        _writer = new Thread(Run) { IsBackground = true, Name = "meshproxy-access-log" };
        _writer.Start();
    }

    /// <summary>Queues a line; never blocks. A full queue drops the line and counts it.</summary>
    public void Enqueue(in AccessLogEntry entry)
    {
        // No reader waits on the channel, so a write is a short lock and a copy; the writer is woken
        // only when a half batch has built up (== so that one request, not every one after, wakes it).
        if (_queue.Writer.TryWrite(entry) && Interlocked.Increment(ref _pending) == WakeAt)
        {
            _wake.Set();
        }
    }

    /// <summary>Writes what is queued (up to a bound of time), then stops the writer.</summary>
    public void Dispose()
    {
        _queue.Writer.TryComplete();
        _wake.Set();
        if (!_writer.Join(TimeSpan.FromSeconds(3)))
        {
            return; // blocked on its target: it is a background thread and dies with the process
        }

        _target?.Dispose();
        _wake.Dispose();
    }

    private void Run()
    {
        var reader = _queue.Reader;
        var json = new Utf8JsonWriter(_buffer, WriterOptions);
        while (true)
        {
            _wake.Wait(FlushInterval);
            _wake.Reset(); // before draining: a line queued from here on is in this drain or sets it again
            while (WriteNextBatch(reader, json) > 0)
            {
            }

            if (reader.Completion.IsCompleted)
            {
                return; // completed by Dispose, and everything queued before it is written
            }
        }
    }

    private int WriteNextBatch(ChannelReader<AccessLogEntry> reader, Utf8JsonWriter json)
    {
        _buffer.ResetWrittenCount();
        var lines = 0;
        while (lines < BatchLines && reader.TryRead(out var entry))
        {
            json.Reset(_buffer);
            Format(json, entry);
            json.Flush();
            _buffer.Write("\n"u8);
            lines++;
        }

        if (lines > 0)
        {
            Interlocked.Add(ref _pending, -lines);
            WriteBatch(lines);
        }

        return lines;
    }

    private void WriteBatch(int lines)
    {
        var path = _path();
        if (path is null)
        {
            return; // turned off while these were queued
        }

        try
        {
            if (path != _targetPath)
            {
                _target?.Dispose();
                _target = null;
                _targetPath = path;
                _target = Open(path);
                _logger.AccessLogOpened(path);
            }

            _target!.Write(_buffer.WrittenSpan);
            _target.Flush();
            _metrics.AccessLogWritten.Inc(lines);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ObjectDisposedException)
        {
            _metrics.AccessLogWriteErrors.Inc();
            _logger.AccessLogFailed(path, lines, ex.Message);
            _target?.Dispose();
            _target = null;
            _targetPath = null; // reopen on the next batch
        }
    }

    private static Stream Open(string path)
    {
        if (path == Stdout)
        {
            return Console.OpenStandardOutput();
        }

        // Not FileMode.Append: the target may be a pipe (a log shipper's FIFO), which cannot seek.
        var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0);
        if (stream.CanSeek)
        {
            stream.Seek(0, SeekOrigin.End);
        }

        return stream;
    }

    /// <summary>Envoy's default access log fields, in its JSON spelling (Istio's JSON access log uses the same names).</summary>
    internal static void Format(Utf8JsonWriter json, in AccessLogEntry e)
    {
        json.WriteStartObject();
        Span<byte> time = stackalloc byte[32];
        e.StartTime.TryFormat(time, out var timeLength, "yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        json.WriteString("start_time"u8, time[..timeLength]);
        json.WriteString("direction"u8, e.Direction);
        json.WriteString("method"u8, e.Method);
        WritePath(json, e.Path, e.QueryString);
        json.WriteString("protocol"u8, e.Protocol);
        json.WriteNumber("response_code"u8, e.ResponseCode);
        json.WriteString("response_flags"u8, e.Flags.ToCode());
        json.WriteNumber("bytes_received"u8, Math.Max(0, e.BytesReceived));
        json.WriteNumber("bytes_sent"u8, Math.Max(0, e.BytesSent));
        json.WriteNumber("duration"u8, (long)e.DurationMs);
        if (e.UpstreamServiceTimeMs < 0)
        {
            json.WriteNull("upstream_service_time"u8); // a local reply: no upstream answered
        }
        else
        {
            json.WriteNumber("upstream_service_time"u8, (long)e.UpstreamServiceTimeMs);
        }

        NullableString(json, "upstream_host"u8, e.UpstreamHost?.ToString());
        NullableString(json, "upstream_cluster"u8, e.UpstreamCluster);
        NullableString(json, "route_name"u8, e.RouteName);
        NullableString(json, "x_request_id"u8, e.RequestId);
        NullableString(json, "authority"u8, e.Authority);
        NullableString(json, "user_agent"u8, e.UserAgent);
        NullableString(json, "x_forwarded_for"u8, e.ForwardedFor);
        WriteAddress(json, "downstream_remote_address"u8, e.RemoteAddress, e.RemotePort);
        NullableString(json, "peer_principal"u8, e.PeerPrincipal);
        json.WriteEndObject();
    }

    // The writer formats hundreds of lines per batch; joining strings or making an IPEndPoint for each
    // would be garbage the whole process pays for in collections. Short values are assembled on the stack.
    private static void WritePath(Utf8JsonWriter json, string path, string query)
    {
        var length = path.Length + query.Length;
        if (query.Length == 0 || length > 1024)
        {
            json.WriteString("path"u8, query.Length == 0 ? path : path + query);
            return;
        }

        Span<char> joined = stackalloc char[length];
        path.CopyTo(joined);
        query.CopyTo(joined[path.Length..]);
        json.WriteString("path"u8, joined);
    }

    /// <summary>As IPEndPoint.ToString writes it ("a.b.c.d:port", "[v6]:port"), without making one.</summary>
    private static void WriteAddress(Utf8JsonWriter json, ReadOnlySpan<byte> name, IPAddress? address, int port)
    {
        if (address is null)
        {
            json.WriteNull(name);
            return;
        }

        Span<char> text = stackalloc char[72]; // "[" + 65 for the longest IPv6 with scope + "]:" + 5
        var v6 = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        var at = 0;
        if (v6)
        {
            text[at++] = '[';
        }

        address.TryFormat(text[at..], out var written);
        at += written;
        if (v6)
        {
            text[at++] = ']';
        }

        text[at++] = ':';
        port.TryFormat(text[at..], out written, default, CultureInfo.InvariantCulture);
        json.WriteString(name, text[..(at + written)]);
    }

    /// <summary>Envoy writes "-" for a value it does not have; JSON consumers are better served by null.</summary>
    private static void NullableString(Utf8JsonWriter json, ReadOnlySpan<byte> name, string? value)
    {
        if (value is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, value);
        }
    }
}
