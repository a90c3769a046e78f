using System.Runtime.CompilerServices;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// One attempt over the wire: the cluster's pool (or the shared one), plaintext or mutual TLS by the
/// endpoint's identity, the endpoint's handler generation when HTTP/2 connections are rotated, the
/// requests-per-connection marker on HTTP/1.1, and YARP's single send.
/// </summary>
internal sealed class UpstreamSender(IHttpForwarder forwarder, UpstreamTransport transport) : IUpstreamSender
{
    // Pooled: the send completes asynchronously on every real request, and a plain async ValueTask method
    // would then allocate its state machine box each time.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ForwarderError> SendAsync(HttpContext context, Cluster cluster, UpstreamEndpoint endpoint, RequestAttempts attempts, CancellationToken cancellationToken)
    {
        var http2 = cluster.Protocol.IsHttp2();
        var pool = transport.Acquire(cluster);
        HandlerGeneration? generation = null;
        try
        {
            var invoker = transport.For(pool, endpoint);
            attempts.Mtls = invoker == pool.Mtls;
            if (cluster.Policy.RotatesHandlers(http2) && pool.Generations is { } generations)
            {
                // HTTP/2 with maxRequestsPerConnection: this endpoint's current handler generation,
                // which no more than the limit of attempts ever send through (a shared fallback pool has none).
                generation = generations.Acquire(endpoint.Key, attempts.Mtls);
                invoker = generation.Invoker;
            }

            if (cluster.Policy.LimitsRequestsPerConnection(http2))
            {
                RequestsPerConnection.MarkAttempt();
            }

            return await forwarder.SendAsync(context, endpoint.DestinationPrefix, invoker, UpstreamTransport.ConfigFor(cluster.Protocol),
                AttemptTransformer.Instance, cancellationToken);
        }
        finally
        {
            // The generation before the pool: a drained pool disposes its generations.
            generation?.Release();
            pool.Release();
        }
    }
}
