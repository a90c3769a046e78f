using System.Net;
using Google.Protobuf;
using MeshProxy.Sidecar.Tests.Telemetry.Otlp;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>An OTLP/HTTP trace receiver: POST /v1/traces with a protobuf ExportTraceServiceRequest, as the OpenTelemetry exporter sends it.</summary>
internal sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly List<(Resource Resource, Span Span)> _spans = [];

    private OtlpReceiver(WebApplication app)
    {
        _app = app;
    }

    public string Endpoint => _app.Urls.First();

    public IReadOnlyList<(Resource Resource, Span Span)> Spans
    {
        get
        {
            lock (_spans)
            {
                return [.. _spans];
            }
        }
    }

    public static async Task<OtlpReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var receiver = new OtlpReceiver(app);
        app.MapPost("/v1/traces", async (HttpContext context) =>
        {
            Assert.Equal("application/x-protobuf", context.Request.ContentType);
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            var request = ExportTraceServiceRequest.Parser.ParseFrom(body.ToArray());
            lock (receiver._spans)
            {
                foreach (var resource in request.ResourceSpans)
                {
                    receiver._spans.AddRange(resource.ScopeSpans.SelectMany(s => s.Spans).Select(s => (resource.Resource, s)));
                }
            }

            context.Response.ContentType = "application/x-protobuf";
            await context.Response.Body.WriteAsync(new ExportTraceServiceResponse().ToByteArray());
        });
        await app.StartAsync();
        return receiver;
    }

    /// <summary>Waits until <paramref name="count"/> spans of the trace have arrived.</summary>
    public async Task<IReadOnlyList<(Resource Resource, Span Span)>> WaitForTraceAsync(string traceIdHex, int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var spans = Spans.Where(s => Hex(s.Span.TraceId) == traceIdHex).ToList();
            if (spans.Count >= count)
            {
                return spans;
            }

            Assert.True(DateTime.UtcNow < deadline, $"{spans.Count} of {count} spans of trace {traceIdHex} arrived; all spans: {string.Join(", ", Spans.Select(s => Hex(s.Span.TraceId) + "/" + s.Span.Name))}");
            await Task.Delay(100);
        }
    }

    public static string Hex(ByteString bytes) => Convert.ToHexStringLower(bytes.Span);

    public static string? Attribute(Span span, string key) => span.Attributes.FirstOrDefault(a => a.Key == key)?.Value switch
    {
        null => null,
        { ValueCase: AnyValue.ValueOneofCase.StringValue } v => v.StringValue,
        { ValueCase: AnyValue.ValueOneofCase.IntValue } v => v.IntValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
        var v => v.ToString(),
    };

    public static string? Attribute(Resource resource, string key) =>
        resource.Attributes.FirstOrDefault(a => a.Key == key)?.Value.StringValue;

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
