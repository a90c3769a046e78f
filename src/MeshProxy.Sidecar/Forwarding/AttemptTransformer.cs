using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// The outbound header rules (<see cref="MeshRequestTransformer"/>), plus what attempts need: the
/// grpc-timeout rewritten with the time left, the cluster handed to the connector, and — the one
/// moment a retry is still possible once a response exists — the decision, taken on the response's
/// status and headers before anything is copied to the caller. Returning false there makes the
/// forwarder drop the upstream response without writing it (it returns <see cref="ForwarderError.None"/>),
/// so the next attempt starts on a clean response.
/// </summary>
internal sealed class AttemptTransformer : HttpTransformer
{
    public static AttemptTransformer Instance { get; } = new();

    private static HttpTransformer Inner => MeshRequestTransformer.Outbound;

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await Inner.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);

        // Peer metadata is the sidecar's to send, and only to an endpoint it authenticated with mTLS (the app's
        // own was dropped by the outbound rules above).
        if (httpContext.Features.Find<RequestAttempts>() is { } attempts)
        {
            attempts.PrepareRequest(proxyRequest);
            if (attempts.Mtls && attempts.PeerHeader is { } peerHeader)
            {
                proxyRequest.Headers.TryAddWithoutValidation(PeerMetadata.HeaderName, peerHeader);
            }
        }
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var copy = await Inner.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is null || httpContext.Features.Find<RequestAttempts>() is not { } attempts)
        {
            return copy;
        }

        // The answering sidecar's metadata is believed only over mTLS; the calling app never sees it.
        attempts.Peer = attempts.Mtls && proxyResponse.Headers.NonValidated.TryGetValues(PeerMetadata.HeaderName, out var values) && values.Count == 1
            ? PeerMetadata.Parse(values.ToString())
            : null;
        attempts.PeerPrincipal = attempts.Mtls ? attempts.Endpoint?.Health.VerifiedPrincipal : null;

        // A WebSocket's stream is counted open after this (the forwarder transforms the 101 before it
        // switches): its istio_tcp_* series then names the same destination workload as the request's.
        var features = httpContext.Features;
        if ((features.Find<IHttpUpgradeFeature>() as MeteredUpgrade ?? features.Find<IHttpExtendedConnectFeature>() as MeteredUpgrade) is { } upgrade)
        {
            upgrade.DestinationAnswered(attempts.Peer, attempts.PeerPrincipal);
        }

        // A response about to be dropped for a retry is never started; one that goes to the caller has
        // its headers sent at once if its body is late (Forwarding/EarlyResponseHeaders.cs).
        if (!attempts.OnResponse(httpContext, proxyResponse) || !copy)
        {
            return false;
        }

        return await EarlyResponseHeaders.SendIfBodyLateAsync(httpContext, proxyResponse, cancellationToken);
    }

    public override ValueTask TransformResponseTrailersAsync(HttpContext httpContext, HttpResponseMessage proxyResponse, CancellationToken cancellationToken) =>
        Inner.TransformResponseTrailersAsync(httpContext, proxyResponse, cancellationToken);
}
