using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>grpc-status of a gRPC response as a label value from a fixed set, so that labelling allocates nothing and a misbehaving upstream cannot mint series.</summary>
internal static class GrpcStatusLabels
{
    public const string HeaderName = "grpc-status";

    /// <summary>The 17 codes gRPC defines (0 OK .. 16 UNAUTHENTICATED).</summary>
    private static readonly string[] Codes = [.. Enumerable.Range(0, 17).Select(static c => c.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    public static bool IsGrpc(HttpRequest request) =>
        request.ContentType is { } type && type.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase);

    /// <summary>From the trailers, or from the headers of a trailers-only response; "unknown" when absent or not a defined code.</summary>
    public static string Of(HttpContext context)
    {
        var trailers = context.Features.Find<IHttpResponseTrailersFeature>()?.Trailers;
        if (trailers is not null && trailers.TryGetValue(HeaderName, out var fromTrailers))
        {
            return Label(fromTrailers);
        }

        return context.Response.Headers.TryGetValue(HeaderName, out var fromHeaders) ? Label(fromHeaders) : Metrics.Istio.IstioLabelNames.Unknown;
    }

    private static string Label(StringValues value) =>
        value.Count == 1 && int.TryParse(value[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var code) && (uint)code < (uint)Codes.Length
            ? Codes[code]
            : Metrics.Istio.IstioLabelNames.Unknown;
}
