using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>Telemetry's own log lines (event ids 70-79, kept apart from the core's).</summary>
internal static partial class SidecarLog
{
    [LoggerMessage(70, LogLevel.Information, "Tracing on: {SamplingPercent}% of new traces sampled, {Propagation} propagation, OTLP to {Endpoint}")]
    public static partial void TracingOn(this ILogger logger, double samplingPercent, string propagation, string endpoint);

    [LoggerMessage(71, LogLevel.Information, "Tracing off (sampling {SamplingPercent}%, OTLP endpoint {Endpoint})")]
    public static partial void TracingOff(this ILogger logger, double samplingPercent, string endpoint);

    [LoggerMessage(72, LogLevel.Information, "Access log to {Path}")]
    public static partial void AccessLogOpened(this ILogger logger, string path);

    [LoggerMessage(73, LogLevel.Warning, "Access log {Path} cannot be written, {Lines} lines lost: {Error}")]
    public static partial void AccessLogFailed(this ILogger logger, string path, int lines, string error);
}
