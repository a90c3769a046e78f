using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;
using Prometheus;

namespace MeshProxy.Metrics;

/// <summary>
/// Serves a <see cref="MetricsRegistry"/> in the format the scraper asks for: OpenMetrics when its Accept header
/// prefers <c>application/openmetrics-text</c> (as Prometheus' does), else the Prometheus text format 0.0.4.
/// Exemplars exist only in OpenMetrics; the text format is what promtool and older scrapers read.
/// </summary>
public static class MetricsExposition
{
    public const string TextContentType = "text/plain; version=0.0.4; charset=utf-8";
    public const string OpenMetricsContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// <summary>
    /// OpenMetrics if the Accept header gives <c>application/openmetrics-text</c> a positive quality at least as
    /// high as any other type it accepts; the text format otherwise, also for a missing or unparsable header.
    /// </summary>
    public static ExpositionFormat Negotiate(string? accept)
    {
        if (string.IsNullOrEmpty(accept) || !MediaTypeHeaderValue.TryParseList([accept], out var types))
        {
            return ExpositionFormat.PrometheusText;
        }

        double openMetrics = 0, other = 0;
        foreach (var type in types)
        {
            var quality = type.Quality ?? 1;
            if (type.MediaType.Equals("application/openmetrics-text", StringComparison.OrdinalIgnoreCase))
            {
                openMetrics = Math.Max(openMetrics, quality);
            }
            else
            {
                other = Math.Max(other, quality);
            }
        }

        return openMetrics > 0 && openMetrics >= other ? ExpositionFormat.OpenMetricsText : ExpositionFormat.PrometheusText;
    }

    public static string ContentTypeOf(ExpositionFormat format) =>
        format == ExpositionFormat.OpenMetricsText ? OpenMetricsContentType : TextContentType;

    /// <summary>Writes the whole exposition in <paramref name="format"/>. Recording goes on while a scrape runs.</summary>
    public static Task WriteAsync(this MetricsRegistry registry, Stream stream, ExpositionFormat format, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(registry);
        return registry.Collectors.CollectAndExportAsTextAsync(stream, format, cancellationToken);
    }

    /// <summary>Answers a scrape: negotiates the format, sets Content-Type (and Vary), writes the exposition.</summary>
    public static Task ServeAsync(this MetricsRegistry registry, HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var format = Negotiate(context.Request.Headers.Accept.ToString());
        var response = context.Response;
        response.ContentType = ContentTypeOf(format);
        response.Headers.Vary = "Accept";
        return registry.WriteAsync(response.Body, format, context.RequestAborted);
    }
}
