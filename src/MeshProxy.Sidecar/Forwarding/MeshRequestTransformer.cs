using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// Header changes on the way to the upstream. The base transformer copies headers and drops the
/// hop-by-hop ones (Connection, Keep-Alive, TE except trailers, Transfer-Encoding, Upgrade handling);
/// the original Host/:authority is kept, as Envoy keeps it, so the app sees the name it was called by.
/// </summary>
internal sealed class MeshRequestTransformer : HttpTransformer
{
    public const string ClientCertHeader = "x-forwarded-client-cert";

    private static readonly UriCreationOptions ExactPath = new() { DangerousDisablePathAndQueryCanonicalization = true };

    // Inbound: this workload's peer metadata, answered to callers authenticated by mTLS.
    private readonly string? _peerHeader;

    private MeshRequestTransformer(bool inbound, string? peerHeader = null)
    {
        IsInbound = inbound;
        _peerHeader = peerHeader;
    }

    /// <summary>For requests from other workloads to the local app, without peer metadata.</summary>
    public static MeshRequestTransformer Inbound { get; } = new(inbound: true);

    /// <summary>For requests from the local app to the mesh.</summary>
    public static MeshRequestTransformer Outbound { get; } = new(inbound: false);

    public bool IsInbound { get; }

    /// <summary>Inbound: this workload's peer metadata, answered to callers authenticated by mTLS; null when none is answered.</summary>
    public string? PeerHeader => _peerHeader;

    /// <summary>For requests from other workloads to the local app, answering mTLS callers with <paramref name="peerHeader"/>: one per config snapshot.</summary>
    public static MeshRequestTransformer InboundWith(string peerHeader) => new(inbound: true, peerHeader);

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);

        // upstream_service_time runs from here (the forwarder sends next) to the response headers; a
        // retry's attempt starts it again.
        UpstreamTiming.Of(httpContext)?.RequestSent();
        if (!IsInbound)
        {
            // The mesh's own headers leave only as a sidecar wrote them. Whatever the app sent under their names
            // is dropped on every outbound path (mesh over mTLS or plaintext, egress): a destination outside the
            // mesh may trust XFCC from its proxy, so an app could otherwise claim any SPIFFE ID to it; and peer
            // metadata is added back by AttemptTransformer only for an endpoint authenticated by mTLS.
            // x-forwarded-for is the app's own claim and passes unchanged (README, Headers). The copy above takes
            // them only from the app's request, so they are looked for there: Kestrel's headers answer an absent name
            // at once, while HttpHeaders.Remove parses and validates the name before it looks (per request, for
            // headers an app hardly ever sends).
            var sent = httpContext.Request.Headers;
            if (sent.ContainsKey(ClientCertHeader))
            {
                proxyRequest.Headers.Remove(ClientCertHeader);
            }

            if (sent.ContainsKey(PeerMetadata.HeaderName))
            {
                proxyRequest.Headers.Remove(PeerMetadata.HeaderName);
            }

            return;
        }

        // Authorization normalized the path: send its exact spelling, not YARP's re-encoding of the decoded one.
        // System.Uri would canonicalize it once more (resolve dot segments, decode some escapes), which under a
        // weaker pathNormalization (NONE, BASE) would hand the app a path other than the one policy matched.
        if (httpContext.Features.Find<Authorization.AuthorizedPathFeature>() is { } authorized)
        {
            proxyRequest.RequestUri = new Uri(
                string.Concat(destinationPrefix.AsSpan().TrimEnd('/'), authorized.Path, httpContext.Request.QueryString.Value),
                in ExactPath);
        }

        var headers = proxyRequest.Headers;

        // Peer metadata is between sidecars (Telemetry/PeerMetadata.cs): the app never sees it.
        headers.Remove(PeerMetadata.HeaderName);

        // The caller's identity is told to the app by the sidecar alone; whatever a caller sent under
        // this name is a forgery attempt and is dropped.
        headers.Remove(ClientCertHeader);
        if (PeerIdentity.Of(httpContext) is { } peer)
        {
            headers.TryAddWithoutValidation(ClientCertHeader, peer.ForwardedClientCert);
        }

        var remote = httpContext.Connection.RemoteIpAddress?.ToString();
        if (remote is not null)
        {
            var existing = httpContext.Request.Headers["x-forwarded-for"];
            headers.Remove("x-forwarded-for");
            headers.TryAddWithoutValidation("x-forwarded-for", StringValues.IsNullOrEmpty(existing) ? remote : $"{existing}, {remote}");
        }

        headers.Remove("x-forwarded-proto");
        headers.TryAddWithoutValidation("x-forwarded-proto", httpContext.Features.Find<ITlsConnectionFeature>() is null ? "http" : "https");
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        // The forwarder calls this as soon as the upstream's headers are in (before any body), and with
        // no response when the attempt failed before one.
        if (proxyResponse is not null)
        {
            UpstreamTiming.Of(httpContext)?.ResponseHeadersReceived();
        }

        var result = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is not null && proxyResponse.Headers.TryGetValues("connection", out var nominated))
        {
            foreach (var value in nominated)
            {
                RemoveNominated(value, httpContext.Response.Headers);
            }
        }

        // Peer metadata: what the app answered under that name is not ours and is dropped; an inbound
        // sidecar tells an mTLS caller's sidecar who answered; the calling app never sees it (outbound).
        var responseHeaders = httpContext.Response.Headers;
        responseHeaders.Remove(PeerMetadata.HeaderName);
        if (IsInbound && _peerHeader is not null && PeerIdentity.Of(httpContext) is not null)
        {
            responseHeaders[PeerMetadata.HeaderName] = _peerHeader;
        }

        // Telemetry: a body of undeclared length (chunked, gRPC) is counted on its way to the caller;
        // a declared one is read from Content-Length, which Kestrel holds the upstream's copy to.
        if (proxyResponse is not null && proxyResponse.Content.Headers.ContentLength is null &&
            proxyResponse.StatusCode != System.Net.HttpStatusCode.SwitchingProtocols)
        {
            var body = httpContext.Features.Find<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>()!;
            httpContext.Features.Put<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>(new CountingResponseBodyFeature(body));
        }

        // Inbound is the last transformer (no retries): the response is the caller's, so headers the app
        // sent ahead of a late body go out now. Outbound, AttemptTransformer does it after its retry decision.
        if (IsInbound && result && proxyResponse is not null)
        {
            return await EarlyResponseHeaders.SendIfBodyLateAsync(httpContext, proxyResponse, cancellationToken);
        }

        return result;
    }

    /// <summary>
    /// RFC 9110 7.6.1: a header named in Connection is for the next hop only. The base transformer
    /// drops the fixed hop-by-hop set; the upstream's nominated ones are dropped here. (On requests,
    /// Kestrel keeps only the Connection tokens it understands, so nominated names are not visible.)
    /// </summary>
    private static void RemoveNominated(string value, IHeaderDictionary headers)
    {
        foreach (var token in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            headers.Remove(token);
        }
    }
}
