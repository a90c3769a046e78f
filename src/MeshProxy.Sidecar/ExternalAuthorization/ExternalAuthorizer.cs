using System.Collections.Concurrent;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using MeshProxy.Api.Envoy.Auth;
using MeshProxy.Api.Envoy.Core;
using MeshProxy.Authorization;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using AppendAction = MeshProxy.Api.Envoy.Core.HeaderValueOption.Types.HeaderAppendAction;

namespace MeshProxy.Sidecar.ExternalAuthorization;

/// <summary>
/// The CUSTOM action: sends envoy.service.auth.v3.Authorization/Check to the provider a CUSTOM policy names and
/// applies its answer, as Envoy's ext_authz filter does (README.md in this folder). One gRPC channel (an h2c
/// connection pool) per provider address lives for the process, shared by every snapshot. The timeout runs on the
/// injected <see cref="TimeProvider"/>.
/// </summary>
internal sealed class ExternalAuthorizer : IDisposable
{
    public const string Allow = "allow";
    public const string Deny = "deny";
    public const string ErrorAllow = "error_allow";
    public const string ErrorDeny = "error_deny";

    /// <summary>Envoy's header in the Check's request headers when the body is included: "true" when only its first bytes are.</summary>
    public const string PartialBodyHeader = "x-envoy-auth-partial-body";

    private readonly ConcurrentDictionary<string, Api.Envoy.Auth.Authorization.AuthorizationClient> _clients = new(StringComparer.Ordinal);
    private readonly ConcurrentBag<GrpcChannel> _channels = [];
    private readonly TimeProvider _time;
    private readonly IMeshServiceConnector _mesh;
    private readonly ProxyMetrics _metrics;
    private readonly ILogger<ExternalAuthorizer> _logger;
    private ExternalAuthorizationProviders? _reported;

    public ExternalAuthorizer(TimeProvider time, SidecarTelemetry telemetry, IMeshServiceConnector mesh, ILogger<ExternalAuthorizer> logger)
    {
        _time = time;
        _mesh = mesh;
        _metrics = telemetry.Proxy;
        _logger = logger;
    }

    /// <summary>
    /// A provider that cannot be asked is reported once per snapshot (the first time one of its requests is refused),
    /// not once per refused request.
    /// </summary>
    private void ReportProblems(ExternalAuthorizationProviders providers)
    {
        if (!ReferenceEquals(Interlocked.Exchange(ref _reported, providers), providers))
        {
            foreach (var problem in providers.Problems)
            {
                ExternalAuthorizationLog.ProviderUnusable(_logger, problem);
            }
        }
    }

    /// <summary>
    /// Asks the provider of <paramref name="match"/> about the request. True: go on to DENY and ALLOW (the
    /// provider's upstream headers are on the request). False: the reply (the provider's denial, or the error
    /// status) has been written, or the caller went away.
    /// </summary>
    public async Task<bool> CheckAsync(HttpContext context, ExternalAuthorizationProviders providers, AuthorizationRequest request, CustomMatch match)
    {
        var provider = providers.Get(match.Provider);
        if (provider.Spec is not { } spec)
        {
            ReportProblems(providers);
            CountDenied(provider.Name, ErrorDeny, match);
            ExternalAuthorizationLog.CheckFailed(_logger, "Denied", request.Method, request.Path, request.Principal ?? "(plaintext)",
                provider.Name, match.Policy.Key, match.RuleIndex, provider.Unusable ?? "not usable");
            await LocalReply.WriteAsync(context, StatusCodes.Status403Forbidden, ResponseFlags.UnauthorizedExternalService, Authorization.InboundAuthorization.DeniedBody);
            return false;
        }

        var aborted = context.RequestAborted;
        CheckedBody.Held body = default;
        if (spec.IncludeRequestBodyInCheck is { } bodySpec)
        {
            try
            {
                body = await CheckedBody.ReadAsync(context, bodySpec, aborted);
            }
            catch (BadHttpRequestException bad)
            {
                // The client's own bytes (a broken chunked body, a body over Kestrel's limit): its error, answered as such.
                await LocalReply.WriteAsync(context, bad.StatusCode, ResponseFlags.DownstreamProtocolError, "bad request body");
                return false;
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException && aborted.IsCancellationRequested)
            {
                return false; // the caller went away while sending its body
            }

            if (body.TooLarge)
            {
                // Envoy's answer for a body over max_request_bytes without allow_partial_message, whatever failOpen says:
                // the provider is not asked.
                await LocalReply.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, ResponseFlags.None, "Payload Too Large");
                return false;
            }
        }

        var (response, error) = await AskAsync(provider, spec, BuildCheck(context, providers.WorkloadPrincipal, request, provider, body), aborted);
        if (response is null)
        {
            // No answer: the caller went away (nobody to answer), or the provider could not be asked.
            return error is not null && await FailAsync(context, request, match, spec, error);
        }

        if (response.Status is null or { Code: 0 })
        {
            _metrics.ExternalAuthorization(provider.Name, Allow);
            if (response.OkResponse is { } ok)
            {
                ApplyAllowed(context, ok, provider);
            }

            return true;
        }

        CountDenied(provider.Name, Deny, match);
        var denied = response.DeniedResponse;
        var status = denied?.Status is { Code: >= 200 and <= 599 } given ? given.Code : StatusCodes.Status403Forbidden;
        ExternalAuthorizationLog.Denied(_logger, request.Method, request.Path, request.Principal ?? "(plaintext)", status,
            provider.Name, match.Policy.Key, match.RuleIndex, response.Status.Code, response.Status.Message);
        await WriteDeniedAsync(context, status, denied, provider);
        return false;
    }

    /// <summary>
    /// The CUSTOM action on a TCP connection, as Envoy's network ext_authz filter asks it (Istio applies an
    /// envoyExtAuthzGrpc provider to TCP): one Check per connection, before any byte reaches the app, carrying the
    /// source and destination addresses and principals and no request attributes. True: go on to DENY and ALLOW.
    /// False: the connection is refused (the provider denied it; it could not be asked and failOpen is off; the
    /// provider is unusable; or <paramref name="aborted"/> fired). statusOnError has no meaning here: a connection
    /// has no status to answer with.
    /// </summary>
    public async Task<bool> CheckConnectionAsync(
        ExternalAuthorizationProviders providers, AuthorizationRequest request, CustomMatch match, System.Net.IPEndPoint? remote, System.Net.IPAddress? local, CancellationToken aborted)
    {
        var provider = providers.Get(match.Provider);
        var principal = request.Principal ?? "(plaintext)";
        if (provider.Spec is not { } spec)
        {
            ReportProblems(providers);
            CountDenied(provider.Name, ErrorDeny, match);
            ExternalAuthorizationLog.ConnectionCheckFailed(_logger, "Denied", request.Port, principal, provider.Name, match.Policy.Key, match.RuleIndex, provider.Unusable ?? "not usable");
            return false;
        }

        var check = new CheckRequest
        {
            Attributes = new AttributeContext
            {
                Source = new AttributeContext.Types.Peer { Address = SocketAddressOf(remote?.Address, remote?.Port ?? 0), Principal = request.Principal ?? string.Empty },
                Destination = new AttributeContext.Types.Peer { Address = SocketAddressOf(local, request.Port), Principal = providers.WorkloadPrincipal },
            },
        };
        var (response, error) = await AskAsync(provider, spec, check, aborted);
        if (response is null)
        {
            if (error is null)
            {
                return false; // the connection is being closed
            }

            if (spec.FailOpen)
            {
                _metrics.ExternalAuthorization(provider.Name, ErrorAllow);
                ExternalAuthorizationLog.ConnectionCheckFailed(_logger, "Allowed (failOpen)", request.Port, principal, provider.Name, match.Policy.Key, match.RuleIndex, error);
                return true;
            }

            CountDenied(provider.Name, ErrorDeny, match);
            ExternalAuthorizationLog.ConnectionCheckFailed(_logger, "Denied", request.Port, principal, provider.Name, match.Policy.Key, match.RuleIndex, error);
            return false;
        }

        if (response.Status is null or { Code: 0 })
        {
            _metrics.ExternalAuthorization(provider.Name, Allow);
            return true;
        }

        CountDenied(provider.Name, Deny, match);
        ExternalAuthorizationLog.DeniedConnection(_logger, request.Port, principal, provider.Name, match.Policy.Key, match.RuleIndex, response.Status.Code, response.Status.Message);
        return false;
    }

    private void CountDenied(string provider, string result, CustomMatch match)
    {
        _metrics.ExternalAuthorization(provider, result);
        _metrics.AuthorizationDecision(Authorization.InboundAuthorization.Deny, match.Policy.Key);
    }

    /// <summary>
    /// Sends the Check under the provider's timeout (on the injected clock). The answer; or no answer with the
    /// reason the provider could not be asked; or neither when <paramref name="aborted"/> fired (nobody to answer).
    /// </summary>
    private async Task<(CheckResponse? Response, string? Error)> AskAsync(
        ExternalAuthorizationProvider provider, Config.Resources.ExtAuthzGrpcProvider spec, CheckRequest check, CancellationToken aborted)
    {
        using var timeout = new CancellationTokenSource(spec.Timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, aborted);
        try
        {
            return (await Client(provider, spec).CheckAsync(check, cancellationToken: linked.Token), null);
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException or HttpRequestException)
        {
            if (aborted.IsCancellationRequested)
            {
                return (null, null);
            }

            return (null, timeout.IsCancellationRequested
                ? $"timed out after {Config.Parsing.Durations.Format(spec.Timeout)}"
                : ex is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : ex.Message);
        }
    }

    private async Task<bool> FailAsync(HttpContext context, AuthorizationRequest request, CustomMatch match, Config.Resources.ExtAuthzGrpcProvider spec, string error)
    {
        var principal = request.Principal ?? "(plaintext)";
        if (spec.FailOpen)
        {
            _metrics.ExternalAuthorization(match.Provider, ErrorAllow);
            ExternalAuthorizationLog.CheckFailed(_logger, "Allowed (failOpen)", request.Method, request.Path, principal, match.Provider, match.Policy.Key, match.RuleIndex, error);
            return true;
        }

        CountDenied(match.Provider, ErrorDeny, match);
        ExternalAuthorizationLog.CheckFailed(_logger, $"Denied with {spec.StatusOnError}", request.Method, request.Path, principal, match.Provider, match.Policy.Key, match.RuleIndex, error);
        await LocalReply.WriteAsync(context, spec.StatusOnError, ResponseFlags.UnauthorizedExternalService, "external authorization failed");
        return false;
    }

    /// <summary>
    /// The CheckRequest as Envoy fills it for an HTTP request: source and destination (address, SPIFFE principal),
    /// the request's time, id, method, host, the normalized path with the query (what policies and the app see),
    /// protocol, size, and the headers (names lowercased, repeats joined with ',', pseudo-headers as HTTP/2 names them).
    /// </summary>
    private CheckRequest BuildCheck(HttpContext context, string workloadPrincipal, AuthorizationRequest request, ExternalAuthorizationProvider provider, CheckedBody.Held body)
    {
        var http = context.Request;
        var connection = context.Connection;
        var target = request.Path + http.QueryString.Value;
        var httpRequest = new AttributeContext.Types.HttpRequest
        {
            Id = http.Headers[RequestIds.HeaderName].ToString(),
            Method = request.Method,
            Path = target,
            Host = request.Host,
            Scheme = http.Scheme,
            Protocol = http.Protocol,
            Size = http.ContentLength ?? -1,
        };
        CopyHeaders(http, request, target, provider.RequestHeaders, httpRequest.Headers);
        if (provider.Spec?.IncludeRequestBodyInCheck is { } bodySpec)
        {
            // As Envoy's with_request_body: the bytes as a string (body) or as bytes (raw_body), and a header saying
            // whether they are the whole body.
            if (bodySpec.PackAsBytes)
            {
                httpRequest.RawBody = Google.Protobuf.ByteString.CopyFrom(body.Bytes.Span);
            }
            else
            {
                httpRequest.Body = System.Text.Encoding.UTF8.GetString(body.Bytes.Span);
            }

            httpRequest.Headers[PartialBodyHeader] = body.Partial ? "true" : "false";
        }

        return new CheckRequest
        {
            Attributes = new AttributeContext
            {
                Source = new AttributeContext.Types.Peer
                {
                    Address = SocketAddressOf(connection.RemoteIpAddress, connection.RemotePort),
                    Principal = request.Principal ?? string.Empty,
                },
                Destination = new AttributeContext.Types.Peer
                {
                    Address = SocketAddressOf(connection.LocalIpAddress, request.Port),
                    Principal = workloadPrincipal,
                },
                Request = new AttributeContext.Types.Request
                {
                    Time = Timestamp.FromDateTimeOffset(_time.GetUtcNow()),
                    Http = httpRequest,
                },
            },
        };
    }

    private static Address SocketAddressOf(System.Net.IPAddress? ip, int port) => new()
    {
        SocketAddress = new SocketAddress
        {
            Address = (ip is { IsIPv4MappedToIPv6: true } ? ip.MapToIPv4() : ip)?.ToString() ?? string.Empty,
            PortValue = (uint)port,
        },
    };

    /// <summary>
    /// An OK answer's headers: set on the request for the app (appended with append: true or append_action
    /// APPEND; ADD_IF_ABSENT and OVERWRITE_IF_EXISTS as named), removed (headers_to_remove), and added to the
    /// response (response_headers_to_add). Pseudo-headers and Host are never touched; upstream headers pass
    /// headersToUpstreamOnAllow.
    /// </summary>
    private static void ApplyAllowed(HttpContext context, OkHttpResponse ok, ExternalAuthorizationProvider provider)
    {
        var headers = context.Request.Headers;
        foreach (var option in ok.Headers)
        {
            if (option.Header is { } header && IsSettable(header.Key) && provider.UpstreamHeaders.Allows(header.Key))
            {
                Apply(headers, option, header.Key, ValueOf(header));
            }
        }

        foreach (var name in ok.HeadersToRemove)
        {
            if (IsSettable(name))
            {
                headers.Remove(name);
            }
        }

        if (ok.ResponseHeadersToAdd.Count > 0)
        {
            var added = ok.ResponseHeadersToAdd;
            context.Response.OnStarting(() =>
            {
                foreach (var option in added)
                {
                    if (option.Header is { } header && IsSettable(header.Key))
                    {
                        Apply(context.Response.Headers, option, header.Key, ValueOf(header));
                    }
                }

                return Task.CompletedTask;
            });
        }
    }

    private static async Task WriteDeniedAsync(HttpContext context, int status, DeniedHttpResponse? denied, ExternalAuthorizationProvider provider)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            context.Abort();
            return;
        }

        response.Clear();
        response.StatusCode = status;
        response.Headers[LocalReply.FlagsHeader] = ResponseFlags.UnauthorizedExternalService.ToCode();
        if (denied is null)
        {
            response.ContentLength = 0;
            return;
        }

        foreach (var option in denied.Headers)
        {
            if (option.Header is { } header && IsSettable(header.Key) && provider.DownstreamHeaders.Allows(header.Key)
                && !header.Key.Equals("content-length", StringComparison.OrdinalIgnoreCase))
            {
                Apply(response.Headers, option, header.Key, ValueOf(header));
            }
        }

        var body = System.Text.Encoding.UTF8.GetBytes(denied.Body);
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, context.RequestAborted);
    }

    private static void Apply(IHeaderDictionary headers, HeaderValueOption option, string name, string value)
    {
        // append (a BoolValue) wins when set. Without it, append_action's zero value (APPEND_IF_EXISTS_OR_ADD) cannot
        // be told from "unset", and Envoy documents append as false in these messages: the value replaces the request's.
        var action = option.Append is { } append
            ? append ? AppendAction.AppendIfExistsOrAdd : AppendAction.OverwriteIfExistsOrAdd
            : option.AppendAction == AppendAction.AppendIfExistsOrAdd ? AppendAction.OverwriteIfExistsOrAdd : option.AppendAction;
        switch (action)
        {
            case AppendAction.AppendIfExistsOrAdd:
                headers.Append(name, value);
                break;
            case AppendAction.AddIfAbsent:
                headers.TryAdd(name, value);
                break;
            case AppendAction.OverwriteIfExists:
                if (headers.ContainsKey(name))
                {
                    headers[name] = value;
                }

                break;
            default:
                headers[name] = value;
                break;
        }
    }

    private static string ValueOf(HeaderValue header) =>
        header.Value.Length > 0 || header.RawValue.IsEmpty ? header.Value : header.RawValue.ToStringUtf8();

    private static bool IsSettable(string name) =>
        name.Length > 0 && name[0] != ':' && !name.Equals("host", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The client for the provider's server. A mesh service (a Service of this snapshot whose endpoints are sidecars)
    /// is asked over mTLS through <see cref="IMeshServiceConnector"/>, whose connections go to the endpoints its load
    /// balancer picks; any other host (an IP, a name outside the mesh) in plaintext h2c. Decided per Check, so a
    /// provider that becomes a mesh service (or stops being one) is reached the new way from the next snapshot on.
    /// </summary>
    private Api.Envoy.Auth.Authorization.AuthorizationClient Client(ExternalAuthorizationProvider provider, Config.Resources.ExtAuthzGrpcProvider spec)
    {
        var mesh = _mesh.IsMeshService(spec.Service, spec.Port);
        return _clients.GetOrAdd(mesh ? provider.MeshKey : provider.Address, static (_, state) =>
        {
            // No proxy from the environment; several connections when one is saturated.
            var handler = new SocketsHttpHandler { UseProxy = false, EnableMultipleHttp2Connections = true };
            if (state.Mesh)
            {
                // The handler speaks h2 with prior knowledge over the mTLS stream the connector returns.
                var connector = state.Self._mesh;
                handler.ConnectCallback = (context, ct) => connector.ConnectAsync(context.DnsEndPoint.Host, context.DnsEndPoint.Port, ct);
            }

            var channel = GrpcChannel.ForAddress(state.Address, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
            state.Self._channels.Add(channel);
            return new Api.Envoy.Auth.Authorization.AuthorizationClient(channel);
        }, (Self: this, Mesh: mesh, provider.Address));
    }

    public void Dispose()
    {
        foreach (var channel in _channels)
        {
            channel.Dispose();
        }
    }

    /// <summary>The request's headers as Envoy puts them in AttributeContext.HttpRequest.headers.</summary>
    private static void CopyHeaders(HttpRequest http, AuthorizationRequest request, string target, HeaderNames allowed, Google.Protobuf.Collections.MapField<string, string> into)
    {
        into[":authority"] = request.Host;
        into[":method"] = request.Method;
        into[":path"] = target;
        into[":scheme"] = http.Scheme;
        foreach (var (name, values) in http.Headers)
        {
            if (name.Length == 0 || name[0] == ':' || name.Equals("host", StringComparison.OrdinalIgnoreCase) || !allowed.Allows(name))
            {
                continue;
            }

            into[name.ToLowerInvariant()] = values.Count == 1 ? values[0] ?? string.Empty : string.Join(',', (IEnumerable<string?>)values);
        }
    }
}
