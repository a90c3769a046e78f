using System.Net;
using System.Net.Sockets;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Egress;

/// <summary>
/// Plain HTTP to a host outside the mesh: decided on the request's Host (and port), forwarded on the
/// sidecar's own connections to addresses the sidecar resolved itself. A denial is 403 with the NR
/// flag (the mesh has no route for this workload to that destination); the body says why.
/// </summary>
internal sealed class EgressForwarder : IDisposable
{
    private static readonly HttpRequestOptionsKey<IPAddress[]> AddressesKey = new("meshproxy.egress.addresses");

    private readonly EgressGate _gate;
    private readonly IHttpForwarder _forwarder;
    private readonly EgressResolver _resolver;
    private readonly HttpMessageInvoker _invoker;
    private readonly ILogger<EgressForwarder> _logger;

    public EgressForwarder(EgressGate gate, IHttpForwarder forwarder, EgressResolver resolver, ILogger<EgressForwarder> logger)
    {
        _logger = logger;
        _gate = gate;
        _forwarder = forwarder;
        _resolver = resolver;
        _invoker = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ActivityHeadersPropagator = null,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            ConnectCallback = ConnectAsync,
        });
    }

    /// <summary>Forwards an allowed request or answers 403: the response flags and, when allowed, the decision (the request's destination labels).</summary>
    /// <param name="rules">The EgressPolicies of the snapshot the request is served on.</param>
    /// <param name="workload">This workload, named in a denial's log line.</param>
    /// <param name="original">Where the app really dialled, for a transparently captured connection (the listener's SO_ORIGINAL_DST).</param>
    public async Task<EgressOutcome> ForwardAsync(HttpContext context, EgressRules rules, WorkloadSpec workload, IPEndPoint? original)
    {
        var hostString = context.Request.Host;
        var host = hostString.Host.Trim('[', ']').TrimEnd('.');
        var port = hostString.Port ?? original?.Port ?? 80;

        var check = await _gate.CheckAsync(rules, workload, host, port, EgressTraffic.Http, original, context.RequestAborted);
        if (!check.Allowed)
        {
            await LocalReply.WriteAsync(context, StatusCodes.Status403Forbidden, ResponseFlags.NoRoute, DenialMessage(host, port, check.DenyReason!, original));
            return new EgressOutcome(ResponseFlags.NoRoute, null);
        }

        // A passthrough (ALLOW_ANY, captured) is pooled by its address, not by a name nobody checked.
        var prefix = check.Decision.Verdict == EgressVerdict.AllowedAny && original is not null
            ? $"http://{original}/"
            : new UriBuilder(Uri.UriSchemeHttp, host, port).Uri.ToString();
        var error = await _forwarder.SendAsync(context, prefix, _invoker, UpstreamTransport.Http11, new Transformer(check.Addresses), context.RequestAborted);
        if (error == ForwarderError.None)
        {
            return new EgressOutcome(ResponseFlags.None, check.Decision);
        }

        // The caller's side, as on the mesh's paths: its own bytes (a header value the client refuses to encode,
        // 400 DPE) or its going away (DC, a Debug line and a count).
        var failure = UpstreamFailure.Of(context, error);
        if (failure.CallersFault || (failure.Flags & ResponseFlags.DownstreamConnectionTermination) != 0)
        {
            await failure.RespondAsync(context, "egress", $"{host}:{port}", "outbound", _logger);
            return new EgressOutcome(failure.Flags, check.Decision);
        }

        // One line per failure (YARP's own line, with its stack trace, is filtered to Error by the host).
        var exception = failure.Exception;
        _logger.UpstreamFailed(ResponseFlags.UpstreamConnectionFailure.ToCode(), "outbound", context.Request.Method, "egress", $"{host}:{port}",
            $"{error}: {UpstreamFailure.Describe(exception)}");
        if (exception is not null)
        {
            _logger.UpstreamFailureDetail(ResponseFlags.UpstreamConnectionFailure.ToCode(), "outbound", $"{host}:{port}", exception);
        }

        await LocalReply.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, ResponseFlags.UpstreamConnectionFailure,
            $"egress to {host}:{port} failed: {error}");
        return new EgressOutcome(ResponseFlags.UpstreamConnectionFailure, check.Decision);
    }

    public void Dispose() => _invoker.Dispose();

    public static string DenialMessage(string host, int port, string reason, IPEndPoint? original) => reason switch
    {
        EgressDenyReason.Spoofed => $"egress denied: {host}:{port} is allowed, but {original?.Address} is not an address of {host}",
        EgressDenyReason.Unresolvable => $"egress denied: {host} is allowed but does not resolve",
        _ => $"egress denied: no EgressPolicy allows {(host.Length == 0 ? "(no host)" : host)}:{port} for this workload (outboundTrafficPolicy REGISTRY_ONLY)",
    };

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext connect, CancellationToken cancellationToken)
    {
        var addresses = connect.InitialRequestMessage.Options.TryGetValue(AddressesKey, out var checkedAddresses)
            ? checkedAddresses
            : await _resolver.ResolveAsync(connect.DnsEndPoint.Host, cancellationToken);
        var socket = await EgressResolver.ConnectAsync(addresses, connect.DnsEndPoint.Port, cancellationToken);
        return new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>The outbound header rules, plus the checked addresses handed to the connect callback.</summary>
    private sealed class Transformer(IPAddress[] addresses) : HttpTransformer
    {
        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
        {
            await MeshRequestTransformer.Outbound.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
            proxyRequest.Options.Set(AddressesKey, addresses);
        }

        public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
        {
            var copy = await MeshRequestTransformer.Outbound.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);

            // Egress makes one attempt and no retry decision: the response is the caller's now, so headers
            // sent ahead of a late body go out at once, as on the mesh's own paths.
            return copy && proxyResponse is not null
                ? await EarlyResponseHeaders.SendIfBodyLateAsync(httpContext, proxyResponse, cancellationToken)
                : copy;
        }

        public override ValueTask TransformResponseTrailersAsync(HttpContext httpContext, HttpResponseMessage proxyResponse, CancellationToken cancellationToken) =>
            MeshRequestTransformer.Outbound.TransformResponseTrailersAsync(httpContext, proxyResponse, cancellationToken);
    }
}

/// <summary>How an egress request ended: its flags, and the decision that let it out (null when denied).</summary>
internal readonly record struct EgressOutcome(ResponseFlags Flags, EgressDecision? Allowed);
