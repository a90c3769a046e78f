using System.Buffers;
using System.Net;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Benchmarks.Telemetry;

/// <summary>
/// The access log writer's work per line: one entry formatted as JSON into the reused buffer, as the
/// background thread does for every line of a batch. Its allocations are garbage the whole process
/// pays for in collections, so the line must cost none.
/// </summary>
[MemoryDiagnoser]
public class AccessLogTelemetryBenchmarks
{
    private static readonly JsonWriterOptions Options = new() { SkipValidation = true };
    private readonly ArrayBufferWriter<byte> _buffer = new(64 * 1024);
    private Utf8JsonWriter _json = null!;
    private AccessLogEntry _entry;

    [GlobalSetup]
    public void Setup()
    {
        _json = new Utf8JsonWriter(_buffer, Options);
        _entry = new AccessLogEntry(
            DateTime.UtcNow, "outbound", "GET", "/cart/items", "?page=2", "HTTP/1.1", 200, ResponseFlags.None, 0, 1024, 1.7, 1.2,
            new UpstreamEndpoint("10.0.0.7", 8080, 1, null), "outbound|80||billing.shop.svc.cluster.local", "cart",
            "5f0c2a9e-1b7d-4e7a-9a0e-0d6f2c1b8e11", "billing", "curl/8.5.0", null, IPAddress.Loopback, 53124, null);
    }

    /// <summary>One line: JSON with Envoy's fields, including a path with a query and the caller's address.</summary>
    [Benchmark]
    public int FormatLine()
    {
        _buffer.ResetWrittenCount();
        _json.Reset(_buffer);
        AccessLog.Format(_json, _entry);
        _json.Flush();
        return _buffer.WrittenCount;
    }
}
