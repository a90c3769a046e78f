using System.Buffers;
using System.Net;
using System.Text.Json;
using System.Threading.Channels;
using MeshProxy.Metrics;
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
/// is slow or blocked) the entry is dropped and counted, never waited for.
/// </summary>
internal sealed class AccessLog : IDisposable
{
    public const int DefaultCapacity = 8192;
    private const string Stdout = "/dev/stdout";

    private static readonly JsonWriterOptions WriterOptions = new() { SkipValidation = true };
    private readonly Channel<AccessLogEntry> _queue;
    private readonly Func<string?> _path;
    private readonly ProxyMetrics _metrics;
    private readonly ILogger _logger;
    private readonly Thread _writer;
    private readonly ArrayBufferWriter<byte> _buffer = new(64 * 1024);
    private Stream? _target;
    private string? _targetPath;

    /// <param name="path">Read by the writer before each batch: the configured target, or null when logging is off.</param>
    public AccessLog(Func<string?> path, ProxyMetrics metrics, ILogger logger, int capacity = DefaultCapacity)
    {
        _path = path;
        _metrics = metrics;
        _logger = logger;
        _queue = Channel.CreateBounded<AccessLogEntry>(
            new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true, SingleWriter = false },
            _ => metrics.AccessLogDropped.Increment());

        // A thread of its own: a write to a blocked pipe or a stalled disk holds this thread only,
        // never one of the thread pool's that requests run on.
        _writer = new Thread(Run) { IsBackground = true, Name = "meshproxy-access-log" };
        _writer.Start();
    }

    /// <summary>Queues a line; never blocks. A full queue drops the line and counts it.</summary>
    public void Enqueue(in AccessLogEntry entry) => _queue.Writer.TryWrite(entry);

    /// <summary>Writes what is queued (up to a bound of time), then stops the writer.</summary>
    public void Dispose()
    {
        _queue.Writer.TryComplete();
        if (!_writer.Join(TimeSpan.FromSeconds(3)))
        {
            return; // blocked on its target: it is a background thread and dies with the process
        }

        _target?.Dispose();
    }

    private void Run()
    {
        var reader = _queue.Reader;
        var json = new Utf8JsonWriter(_buffer, WriterOptions);
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            _buffer.ResetWrittenCount();
            var lines = 0;
            while (lines < 512 && reader.TryRead(out var entry))
            {
                json.Reset(_buffer);
                Format(json, entry);
                json.Flush();
                _buffer.Write("\n"u8);
                lines++;
            }

            WriteBatch(lines);
        }
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
            _metrics.AccessLogWritten.Add(lines);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ObjectDisposedException)
        {
            _metrics.AccessLogWriteErrors.Increment();
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
        json.WriteString("start_time"u8, e.StartTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture));
        json.WriteString("direction"u8, e.Direction);
        json.WriteString("method"u8, e.Method);
        json.WriteString("path"u8, e.QueryString.Length == 0 ? e.Path : e.Path + e.QueryString);
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
        NullableString(json, "downstream_remote_address"u8, e.RemoteAddress is null ? null : new IPEndPoint(e.RemoteAddress, e.RemotePort).ToString());
        NullableString(json, "peer_principal"u8, e.PeerPrincipal);
        json.WriteEndObject();
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
