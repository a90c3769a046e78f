using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// A response the sidecar makes itself (no route, upstream failure...). It names its flag in a header
/// so that whoever reads it — the app, a curl in a debugging session — can tell the proxy answered.
/// </summary>
internal static class LocalReply
{
    public const string FlagsHeader = "x-meshproxy-response-flags";

    public static Task WriteAsync(HttpContext context, int statusCode, ResponseFlags flags, string message)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            // Headers already went out: the only honest signal left is to abort the stream.
            context.Abort();
            return Task.CompletedTask;
        }

        response.Clear();
        response.StatusCode = statusCode;
        response.ContentType = "text/plain; charset=utf-8";
        response.Headers[FlagsHeader] = flags.ToCode();
        var body = message + "\n";
        response.ContentLength = System.Text.Encoding.UTF8.GetByteCount(body);
        return response.WriteAsync(body, context.RequestAborted);
    }
}
