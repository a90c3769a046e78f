using MeshProxy.Authorization;
using MeshProxy.Sidecar.Authentication;
using MeshProxy.Sidecar.Authorization;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.ExternalAuthorization;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Forwarding.Http11;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Runtime;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Pipelines;

/// <summary>
/// Other workloads' requests to the local app (listener 15006), top to bottom:
/// snapshot (503 until the control plane's first push) -> request id -> telemetry start -> the caller's SPIFFE ID (verified once per connection by
/// Listeners/InboundTls.cs; null on PERMISSIVE plaintext) -> authorization (method guard, path normalization,
/// JWT request authentication when a RequestAuthentication applies, a CUSTOM policy's external check, policy: 400 / 401 / 403 before anything reaches the app) -> forward to 127.0.0.1:appPort (x-forwarded-*,
/// caller identity header set by the sidecar) -> failures as response flags -> telemetry (reporter=destination).
/// </summary>
internal sealed class InboundPipeline(
    RuntimeStore runtimes, IHttpForwarder forwarder, LeanForwarder lean, UpstreamTransport transport, SidecarTelemetry telemetry, JwksCache jwks, ExternalAuthorizer external, TimeProvider time, ILogger<InboundPipeline> logger)
{
    private const string Direction = "inbound";

    public async Task HandleAsync(HttpContext context)
    {
        // 1. One snapshot for the whole request.
        var runtime = runtimes.Current;
        var snapshot = runtime.Snapshot;
        RequestIds.Ensure(context.Request);

        // T1. Telemetry: the clock starts; a sampled request gets a server span, continuing the caller's trace.
        var record = telemetry.Start(context, runtime.Labels, outbound: false);
        try
        {
            // 0. Control-plane mode before the first push: the placeholder snapshot has no policies, so
            //    nothing is let through to be judged by an empty policy set.
            if (snapshot.Provisional)
            {
                record.Flags |= ResponseFlags.NoRoute;
                await LocalReply.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, record.Flags, "no configuration yet: waiting for the control plane");
                return;
            }

            // A. Authorization: nothing reaches the app that the snapshot's policies did not allow, and the
            //    app receives the very path they were matched against (Authorization/README.md, "In the pipeline").
            // A1. Method guard: a standard method in another case ("post") is refused, because apps compare
            //     methods case-insensitively while policies match them exactly.
            if (!MethodGuard.IsAcceptable(context.Request.Method))
            {
                InboundAuthorization.ReportRejected(telemetry.Proxy, logger, context, "standard method not in uppercase");
                record.Flags |= ResponseFlags.DownstreamProtocolError;
                await LocalReply.WriteAsync(context, StatusCodes.Status400BadRequest, record.Flags, "bad request: method must be uppercase");
                return;
            }

            // A2. Path: normalized from the raw request target as MeshConfig's pathNormalization says; spellings
            //     that cannot be authorized safely (by default encoded slashes, backslashes, ';', broken escapes) are refused.
            if (!InboundAuthorization.TryNormalizePath(context, snapshot.Mesh.PathNormalization, out var path, out var rejection))
            {
                InboundAuthorization.ReportRejected(telemetry.Proxy, logger, context, rejection.ToString());
                record.Flags |= ResponseFlags.DownstreamProtocolError;
                await LocalReply.WriteAsync(context, StatusCodes.Status400BadRequest, record.Flags, $"bad request: path refused ({rejection})");
                return;
            }

            InboundAuthorization.UseNormalizedPath(context, path);

            // A3. Request authentication (only when a RequestAuthentication applies to the workload): a token that
            //     no rule validates is refused with 401; no token is left to policy; a valid one gives the policy
            //     its request principal and claims (Authentication/README.md).
            RequestAuth? auth = null;
            if (snapshot.Authentication is { } authenticator)
            {
                var authentication = await authenticator.AuthenticateAsync(context, jwks, time);
                if (authentication.Refused)
                {
                    await RequestAuthentication.RefuseAsync(context, telemetry.Proxy, logger, authentication, path, Identity.PeerIdentity.Of(context)?.Principal);
                    return;
                }

                telemetry.Proxy.RequestAuthenticated(authentication.Auth is null ? RequestAuthentication.NoToken : RequestAuthentication.Valid);
                auth = authentication.Auth;
            }

            // A4. Policy: the peer's verified SPIFFE ID (none on plaintext), source address, host, port,
            //     method, normalized path, headers, the JWT's principal and claims. Denials and dry-run
            //     "would deny" are logged and counted.
            var authorization = InboundAuthorization.RequestOf(context, snapshot, path, auth);

            // A4a. CUSTOM first, as Istio evaluates it: a request a CUSTOM policy matches is sent to its provider
            //      (ExternalAuthorization/README.md); a denial is the provider's answer, an allow goes on to DENY and
            //      ALLOW with the provider's headers on the request.
            if (snapshot.Authorization.MatchCustom(authorization) is { } custom &&
                !await external.CheckAsync(context, snapshot.ExternalAuthorization, authorization, custom))
            {
                record.Flags |= ResponseFlags.UnauthorizedExternalService;
                return;
            }

            var decision = snapshot.Authorization.Evaluate(authorization);
            InboundAuthorization.Report(telemetry.Proxy, logger, context, authorization, decision);
            if (!decision.Allowed)
            {
                await LocalReply.WriteAsync(context, StatusCodes.Status403Forbidden, ResponseFlags.None, InboundAuthorization.DeniedBody);
                return;
            }

            // 2. The local app is the only upstream.
            var cluster = snapshot.InboundCluster;
            var endpoint = cluster.Endpoints[0];
            record.Cluster = cluster;
            record.Endpoint = endpoint;
            telemetry.MeterUpgrade(context, runtime.Labels, ref record, outbound: false);

            // 3. Forward, streaming both bodies: an HTTP/1.1 request to a plaintext HTTP/1.1 app by the lean path
            //    (Forwarding/Http11), anything else (upgrades, 100-continue, HTTP/2) by YARP.
            var error = LeanForwarder.Takes(context.Request, cluster)
                ? await lean.ForwardAsync(context, endpoint, runtime.InboundTransformer.PeerHeader)
                : await forwarder.SendAsync(context, endpoint.DestinationPrefix, transport.Inbound,
                    UpstreamTransport.ConfigFor(cluster.Protocol), runtime.InboundTransformer);

            // 4. Failures become a response flag, a log line and, if nothing was sent yet, a clear answer.
            if (error != ForwarderError.None)
            {
                var failure = UpstreamFailure.Of(context, error);
                record.Flags |= failure.Flags;
                await failure.RespondAsync(context, cluster, endpoint, Direction, logger);
            }
        }
        finally
        {
            // T2. Telemetry (reporter=destination): metrics, access log line, span end.
            telemetry.Finish(context, runtime.Labels, ref record, outbound: false);
        }
    }
}
