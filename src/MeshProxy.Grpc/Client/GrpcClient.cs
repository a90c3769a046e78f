using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using MeshProxy.Grpc.Client.Internal;
using MeshProxy.Grpc.Internal;

namespace MeshProxy.Grpc.Client;

/// <summary>
/// A gRPC client over one HTTP/2 endpoint. http:// addresses speak h2c with prior knowledge,
/// https:// speak HTTP/2 over TLS (ALPN h2). Thread-safe; calls share the handler's connections.
/// </summary>
public sealed class GrpcClient : IDisposable
{
    private static readonly ProductInfoHeaderValue UserAgent = new("grpc-meshproxy", "1.0");

    private readonly HttpClient httpClient;
    private readonly Uri address;
    private readonly GrpcClientOptions options;

    /// <param name="address">Scheme, host and port of the server, e.g. http://127.0.0.1:15010.</param>
    /// <param name="handler">
    /// The transport, owned by this client from now on. Pass one to set TLS options (client
    /// certificate, server validation); its HTTP/2 keepalive settings are overwritten from
    /// <paramref name="options"/>. Null creates a plain one.
    /// </param>
    public GrpcClient(Uri address, SocketsHttpHandler? handler = null, GrpcClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.Scheme != Uri.UriSchemeHttp && address.Scheme != Uri.UriSchemeHttps)
        {
            throw new ArgumentException($"gRPC address must be http:// or https://, not '{address}'.", nameof(address));
        }

        this.address = address;
        this.options = options ?? new GrpcClientOptions();
        handler ??= new SocketsHttpHandler();
        handler.KeepAlivePingDelay = this.options.KeepAlivePingDelay;
        handler.KeepAlivePingTimeout = this.options.KeepAlivePingTimeout;
        // Always: the sidecar's config stream may sit idle for hours, and that is exactly when a
        // control plane that vanished must be noticed.
        handler.KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always;
        handler.EnableMultipleHttp2Connections = true;
        httpClient = new HttpClient(handler, disposeHandler: true)
        {
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = System.Threading.Timeout.InfiniteTimeSpan,
        };
    }

    /// <summary>One request, one response. Non-OK statuses and transport failures throw <see cref="GrpcStatusException"/>.</summary>
    public async Task<TResponse> UnaryAsync<TRequest, TResponse>(
        string method,
        TRequest request,
        MessageParser<TResponse> responseParser,
        GrpcCallOptions? callOptions = null)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(request);
        callOptions ??= GrpcCallOptions.Default;
        using var scope = new CallScope(callOptions);
        scope.ThrowIfDeadlinePassed();
        using var message = CreateRequest(method, new UnaryContent(request), scope, callOptions);
        try
        {
            var response = await httpClient.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, scope.Token);
            await using var reader = await ResponseReader<TResponse>.CreateAsync(
                response, responseParser, options.MaxReceiveMessageSize, scope.Token);
            var result = await reader.ReadAsync(scope.Token)
                ?? throw new GrpcStatusException(StatusCode.Internal, "Server ended a unary call with OK but no response message.");
            if (await reader.ReadAsync(scope.Token) is not null)
            {
                throw new GrpcStatusException(StatusCode.Internal, "Server sent more than one response message to a unary call.");
            }

            return result;
        }
        catch (Exception ex) when (scope.Translate(ex) is var translated && translated != ex)
        {
            throw translated;
        }
    }

    /// <summary>
    /// Starts a bidirectional streaming call (also serves client- and server-streaming methods).
    /// Nothing is awaited here: connection failures surface from the first write or read.
    /// Dispose the call to release it; disposing before the status was read cancels it.
    /// </summary>
    public GrpcDuplexCall<TRequest, TResponse> StartDuplex<TRequest, TResponse>(
        string method,
        MessageParser<TResponse> responseParser,
        GrpcCallOptions? callOptions = null)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        callOptions ??= GrpcCallOptions.Default;
        var scope = new CallScope(callOptions);
        var content = new DuplexContent();
        var message = CreateRequest(method, content, scope, callOptions);
        Task<HttpResponseMessage> send;
        if (scope.Token.IsCancellationRequested)
        {
            send = Task.FromCanceled<HttpResponseMessage>(scope.Token);
        }
        else
        {
            send = httpClient.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, scope.Token);
        }

        return new GrpcDuplexCall<TRequest, TResponse>(scope, message, content, send, responseParser, options.MaxReceiveMessageSize);
    }

    public void Dispose() => httpClient.Dispose();

    private HttpRequestMessage CreateRequest(string method, HttpContent content, CallScope scope, GrpcCallOptions callOptions)
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        if (method[0] != '/')
        {
            throw new ArgumentException($"'{method}' is not a gRPC method path (/package.Service/Method).", nameof(method));
        }

        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(address, method))
        {
            Content = content,
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        var headers = request.Headers;
        headers.TE.Add(new TransferCodingWithQualityHeaderValue("trailers"));
        headers.UserAgent.Add(UserAgent);
        headers.TryAddWithoutValidation(GrpcProtocol.AcceptEncodingHeader, GrpcProtocol.IdentityEncoding);
        if (scope.Timeout is { } timeout)
        {
            headers.TryAddWithoutValidation(GrpcProtocol.TimeoutHeader, GrpcTimeout.Format(timeout));
        }

        if (callOptions.Metadata is { } metadata)
        {
            foreach (var (name, value) in metadata)
            {
                if (!headers.TryAddWithoutValidation(name, value))
                {
                    throw new ArgumentException($"'{name}' cannot be sent as gRPC metadata.", nameof(callOptions));
                }
            }
        }

        return request;
    }
}
