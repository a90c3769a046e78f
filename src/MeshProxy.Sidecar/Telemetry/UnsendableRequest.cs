using System.Text;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// What in the caller's own request the upstream HTTP client refuses to send. Kestrel accepts header values
/// with UTF-8 bytes (RFC 9110 5.5 obs-text; it decodes them as UTF-8), while SocketsHttpHandler writes request
/// headers as ASCII only and fails the send with an HttpRequestException before a byte of the request leaves
/// — which, unrecognised, looked like an upstream reset (503 UC), was retried and counted against a healthy
/// endpoint by outlier detection. Such a failure is the caller's: 400 DPE, no retry, no health bookkeeping.
/// <para>
/// Looked for only after a send failed, so the success path pays nothing: a request with such a header can
/// never be sent, so when one fails without a connect error, the header is the cause.
/// </para>
/// </summary>
internal static class UnsendableRequest
{
    /// <summary>The name of the first request header whose value is not ASCII; null when every value is.</summary>
    public static string? FindHeader(HttpRequest request)
    {
        foreach (var header in request.Headers)
        {
            foreach (var value in header.Value)
            {
                if (value is not null && !Ascii.IsValid(value))
                {
                    return header.Key;
                }
            }
        }

        return null;
    }

    /// <summary>The local reply's reason for <paramref name="header"/>.</summary>
    public static string Reason(string header) =>
        $"request cannot be forwarded as sent: the value of header '{header}' is not ASCII";
}
