namespace MeshProxy.Authorization;

/// <summary>
/// HTTP methods are case-sensitive (RFC 9110 §9.1) and policies match them exactly, but many
/// applications (ASP.NET Core routing among them) compare methods case-insensitively. A request with
/// "post" would then slip past a DENY on "POST" and still reach the POST handler. The sidecar
/// therefore refuses (400) any request whose method is a standard verb spelled in another case;
/// extension methods pass through and are matched exactly.
/// </summary>
internal static class MethodGuard
{
    private static readonly string[] StandardMethods = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

    public static bool IsAcceptable(string method)
    {
        foreach (var standard in StandardMethods)
        {
            if (string.Equals(standard, method, StringComparison.OrdinalIgnoreCase))
            {
                return string.Equals(standard, method, StringComparison.Ordinal);
            }
        }

        return method.Length > 0;
    }
}
