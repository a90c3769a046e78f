using System.Net;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Authorization;

/// <summary>
/// What authorization looks at, gathered once per request. <see cref="Path"/> must already be the
/// output of <see cref="PathNormalizer"/> and <see cref="Method"/> must have passed
/// <see cref="MethodGuard"/>: the engine matches exactly what the application will receive.
/// </summary>
internal readonly struct AuthorizationRequest
{
    private const string SpiffeScheme = "spiffe://";

    public AuthorizationRequest(
        string? principal,
        IPAddress? sourceIp,
        string host,
        int port,
        string method,
        string path,
        IHeaderDictionary? headers = null,
        string? sni = null)
    {
        Principal = principal;
        SourceIp = sourceIp;
        Host = host;
        Port = port;
        Method = method;
        Path = path;
        Headers = headers;
        Sni = sni;
    }

    /// <summary>The peer's SPIFFE ID from its verified client certificate; null on plaintext.</summary>
    public string? Principal { get; }

    public IPAddress? SourceIp { get; }

    /// <summary>The Host (or :authority) as received; a port and a trailing dot are ignored when matching.</summary>
    public string Host { get; }

    /// <summary>The port the request arrived on (the workload's port, before any redirect).</summary>
    public int Port { get; }

    public string Method { get; }

    /// <summary>The normalized path, without the query string.</summary>
    public string Path { get; }

    public IHeaderDictionary? Headers { get; }

    public string? Sni { get; }

    /// <summary>The principal as Istio writes it in policies: the SPIFFE ID without "spiffe://". Empty on plaintext.</summary>
    public ReadOnlySpan<char> PrincipalName =>
        Principal is null ? default
        : Principal.StartsWith(SpiffeScheme, StringComparison.Ordinal) ? Principal.AsSpan(SpiffeScheme.Length)
        : Principal.AsSpan();

    /// <summary>The namespace from a SPIFFE ID of the form spiffe://trust-domain/ns/NAMESPACE/sa/ACCOUNT; empty otherwise.</summary>
    public ReadOnlySpan<char> SourceNamespace
    {
        get
        {
            var name = PrincipalName;
            var slash = name.IndexOf('/');
            if (slash <= 0)
            {
                return default;
            }

            var rest = name[(slash + 1)..];
            if (!rest.StartsWith("ns/", StringComparison.Ordinal))
            {
                return default;
            }

            rest = rest[3..];
            var end = rest.IndexOf('/');
            return end > 0 && rest[end..].StartsWith("/sa/", StringComparison.Ordinal) ? rest[..end] : default;
        }
    }

    /// <summary>The host name without port or trailing dot, so "Billing.ns:8080" and "billing.ns." match "billing.ns".</summary>
    public ReadOnlySpan<char> HostName
    {
        get
        {
            var host = Host.AsSpan();
            if (host.StartsWith('['))
            {
                var close = host.IndexOf(']');
                return close > 0 ? host[..(close + 1)] : host;
            }

            var colon = host.LastIndexOf(':');
            if (colon >= 0 && host.IndexOf(':') == colon)
            {
                host = host[..colon];
            }

            return host.EndsWith('.') ? host[..^1] : host;
        }
    }
}
