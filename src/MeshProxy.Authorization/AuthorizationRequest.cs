using System.Net;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Authorization;

/// <summary>
/// What authorization looks at, gathered once per request. <see cref="Path"/> must already be the
/// output of <see cref="PathNormalizer"/> and <see cref="Method"/> must have passed
/// <see cref="MethodGuard"/>: the engine matches exactly what the application will receive.
/// </summary>
internal readonly struct AuthorizationRequest
{
    private const string SpiffeScheme = "spiffe://";

    private readonly (int Start, int Length) _principalName;
    private readonly (int Start, int Length) _namespace;
    private readonly int _hostNameLength;

    public AuthorizationRequest(
        string? principal,
        IPAddress? sourceIp,
        string host,
        int port,
        string method,
        string path,
        IHeaderDictionary? headers = null,
        string? sni = null,
        RequestAuth? auth = null)
    {
        Auth = auth;
        Principal = principal;
        SourceIp = sourceIp;
        Host = host;
        Port = port;
        Method = method;
        Path = path;
        Headers = headers;
        Sni = sni;
        _principalName = FindPrincipalName(principal);
        _namespace = FindNamespace(principal, _principalName);
        _hostNameLength = FindHostNameLength(host);
    }

    /// <summary>
    /// What authorization looks at for a TCP connection (no HTTP request): the peer, its address, the port it dialled and
    /// the SNI. The engine applies Istio's rule for the HTTP-only fields of such a connection (<see cref="TcpRules"/>).
    /// </summary>
    public static AuthorizationRequest ForConnection(string? principal, IPAddress? sourceIp, int port, string? sni) =>
        new(principal, sourceIp, string.Empty, port, string.Empty, string.Empty, headers: null, sni) { IsTcp = true };

    /// <summary>A TCP connection rather than an HTTP request: rules are read as <see cref="TcpRules"/> says.</summary>
    public bool IsTcp { get; init; }

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

    /// <summary>The validated JWT, if the request carried one a RequestAuthentication accepted; null otherwise.</summary>
    public RequestAuth? Auth { get; }

    /// <summary>"iss/sub" of the validated JWT; empty without one, so requestPrincipals: ["*"] never matches then.</summary>
    public ReadOnlySpan<char> RequestPrincipal => Auth is null ? default : Auth.Principal.AsSpan();

    /// <summary>The principal as Istio writes it in policies: the SPIFFE ID without "spiffe://". Empty on plaintext.</summary>
    public ReadOnlySpan<char> PrincipalName => Principal.AsSpan(_principalName.Start, _principalName.Length);

    /// <summary>The namespace from a SPIFFE ID of the form spiffe://trust-domain/ns/NAMESPACE/sa/ACCOUNT; empty otherwise.</summary>
    public ReadOnlySpan<char> SourceNamespace => Principal.AsSpan(_namespace.Start, _namespace.Length);

    /// <summary>The host name without port or trailing dot, so "Billing.ns:8080" and "billing.ns." match "billing.ns".</summary>
    public ReadOnlySpan<char> HostName => Host.AsSpan(0, _hostNameLength);

    // Every policy looks at these; finding them once here keeps each match a plain comparison.
    private static (int Start, int Length) FindPrincipalName(string? principal) =>
        principal is null ? (0, 0)
        : principal.StartsWith(SpiffeScheme, StringComparison.Ordinal) ? (SpiffeScheme.Length, principal.Length - SpiffeScheme.Length)
        : (0, principal.Length);

    private static (int Start, int Length) FindNamespace(string? principal, (int Start, int Length) name)
    {
        var span = principal.AsSpan(name.Start, name.Length);
        var slash = span.IndexOf('/');
        if (slash <= 0 || !span[(slash + 1)..].StartsWith("ns/", StringComparison.Ordinal))
        {
            return (0, 0);
        }

        var start = slash + 4;
        var end = span[start..].IndexOf('/');
        return end > 0 && span[(start + end)..].StartsWith("/sa/", StringComparison.Ordinal) ? (name.Start + start, end) : (0, 0);
    }

    private static int FindHostNameLength(string host)
    {
        var span = host.AsSpan();
        if (span.StartsWith('['))
        {
            var close = span.IndexOf(']');
            return close > 0 ? close + 1 : span.Length;
        }

        var colon = span.LastIndexOf(':');
        if (colon >= 0 && span.IndexOf(':') == colon)
        {
            span = span[..colon];
        }

        return span.EndsWith('.') ? span.Length - 1 : span.Length;
    }
}
