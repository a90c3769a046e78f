using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>x-request-id: kept when the caller sent one, made up otherwise, and forwarded either way; the access log and spans carry it.</summary>
internal static class RequestIds
{
    public const string HeaderName = "x-request-id";

    public static string Ensure(HttpRequest request)
    {
        var headers = request.Headers;
        var existing = headers[HeaderName];
        if (existing.Count > 0 && !string.IsNullOrEmpty(existing[0]))
        {
            return existing[0]!;
        }

        var id = Guid.NewGuid().ToString();
        headers[HeaderName] = id;
        return id;
    }
}
