using Microsoft.AspNetCore.Http;

namespace MeshProxy.Grpc.Server;

/// <summary>What a handler knows about its call besides the messages.</summary>
public sealed class GrpcCallContext
{
    internal GrpcCallContext(HttpContext httpContext, string method, DateTimeOffset? deadline, CancellationToken cancellationToken)
    {
        HttpContext = httpContext;
        Method = method;
        Deadline = deadline;
        CancellationToken = cancellationToken;
    }

    /// <summary>The full method path, "/package.Service/Method".</summary>
    public string Method { get; }

    /// <summary>The call's metadata: the request headers (authorization, custom metadata, ...).</summary>
    public IHeaderDictionary RequestHeaders => HttpContext.Request.Headers;

    /// <summary>When the client's grpc-timeout runs out; null when it sent none.</summary>
    public DateTimeOffset? Deadline { get; }

    /// <summary>Cancelled when the deadline passes or the client goes away.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>The underlying HTTP/2 exchange (connection info, client certificate, ...).</summary>
    public HttpContext HttpContext { get; }

    /// <summary>One metadata value, or null. Repeated headers come back joined with ",".</summary>
    public string? GetMetadata(string name)
    {
        var values = HttpContext.Request.Headers[name];
        return values.Count == 0 ? null : values.ToString();
    }
}
