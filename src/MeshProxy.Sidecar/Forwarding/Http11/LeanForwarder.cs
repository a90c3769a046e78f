using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Authorization;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Forwarding.Http11;

/// <summary>
/// The lean inbound hop: a caller's HTTP/1.1 request to a plaintext HTTP/1.1 app, written from Kestrel's request
/// straight onto a pooled connection and the app's response read back by the strict <see cref="ResponseHeadParser"/>,
/// without YARP's HttpRequestMessage/HttpResponseMessage and header collections. <see cref="Takes"/> says which
/// requests it serves; everything else (upgrades, 100-continue, request trailers, HTTP/2 callers, HTTP/2 and TLS
/// apps) keeps going through YARP. Does what the YARP path does for these requests: the same header changes as
/// <see cref="MeshRequestTransformer"/>, bodies streamed both ways, response headers passed on early when the body
/// is late, upstream_service_time, the stream idle timeout, and failures reported as the forwarder's errors
/// (<see cref="IForwarderErrorFeature"/>), which the pipeline classifies as it does YARP's.
/// </summary>
internal sealed class LeanForwarder : IDisposable
{
    private const int BodyChunkBytes = 16 * 1024;
    private const int ChunkHeaderRoom = 18; // up to 16 hex digits and CRLF in front of a request body chunk

    private static readonly Encoding Latin1 = Encoding.Latin1;
    private static readonly byte[] LastChunk = "0\r\n\r\n"u8.ToArray();

    private readonly ConnectionPool _pool;
    private readonly TimeProvider _time;
    private Resolved? _last; // one reference, so that a reader never pairs one endpoint with another's address

    public LeanForwarder(TimeProvider time)
    {
        _time = time;
        _pool = new ConnectionPool(time, ClusterPolicy.Default.Pool.IdleTimeout);
    }

    /// <summary>Idle pooled connections (tests).</summary>
    internal int IdleConnections => _pool.IdleCount;

    /// <summary>
    /// Whether this path serves the request: an HTTP/1.1 caller, an app spoken to in plaintext HTTP/1.1, and none
    /// of what the lean path leaves to YARP (Upgrade, Expect, request trailers, Content-Length with Transfer-Encoding).
    /// A handful of header reads by Kestrel's known-header properties.
    /// </summary>
    public static bool Takes(HttpRequest request, Cluster cluster)
    {
        if (cluster.Protocol != AppProtocol.Http || !HttpProtocol.IsHttp11(request.Protocol))
        {
            return false;
        }

        var headers = request.Headers;
        return headers.Upgrade.Count == 0 && headers.Expect.Count == 0 && headers.Trailer.Count == 0 &&
               !(headers.TransferEncoding.Count > 0 && request.ContentLength is not null);
    }

    /// <summary>Forwards the request to <paramref name="endpoint"/> and its response back; on failure, the error is also in <see cref="IForwarderErrorFeature"/>.</summary>
    /// <param name="peerHeader">This workload's peer metadata for mTLS callers (<see cref="MeshRequestTransformer.PeerHeader"/>).</param>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ForwarderError> ForwardAsync(HttpContext context, UpstreamEndpoint endpoint, string? peerHeader)
    {
        var address = AddressOf(endpoint);
        var aborted = context.RequestAborted;
        var request = context.Request;
        var chunked = request.ContentLength is null && request.Headers.TransferEncoding.Count > 0;
        var hasBody = chunked || request.ContentLength > 0;
        for (var attempt = 0; ; attempt++)
        {
            var connection = _pool.TryRent(address);
            var reused = connection is not null;
            if (connection is null)
            {
                try
                {
                    connection = await UpstreamConnection.ConnectAsync(address, _time, ClusterPolicy.DefaultConnectTimeout, aborted);
                }
                catch (Exception e) when (e is SocketException or HttpRequestException or OperationCanceledException)
                {
                    return Fail(context, aborted.IsCancellationRequested ? ForwarderError.RequestCanceled : ForwarderError.Request, e);
                }
            }

            var exchange = new LeanExchange(this, context, connection, chunked, hasBody, peerHeader);
            var error = await exchange.RunAsync();

            // A reused connection the app closed just as the request went out: nothing of the request can have been
            // processed, so it is sent once more on a new connection, as SocketsHttpHandler does (never with a body,
            // which was read from the caller already).
            if (error == ForwarderError.Request && reused && exchange.NothingReceived && !hasBody && attempt == 0 && !aborted.IsCancellationRequested)
            {
                context.Features.Put<IForwarderErrorFeature>(null);
                continue;
            }

            return error;
        }
    }

    public void Dispose() => _pool.Dispose();

    private static ForwarderError Fail(HttpContext context, ForwarderError error, Exception? exception)
    {
        context.Features.Put<IForwarderErrorFeature>(new ErrorFeature(error, exception));
        return error;
    }

    private IPEndPoint AddressOf(UpstreamEndpoint endpoint)
    {
        // The app's endpoint object lives as long as its snapshot: parsed once per snapshot, not per request.
        var last = Volatile.Read(ref _last);
        if (last is not null && ReferenceEquals(endpoint, last.Endpoint))
        {
            return last.Address;
        }

        var address = new IPEndPoint(IPAddress.Parse(endpoint.Address), endpoint.Port);
        Volatile.Write(ref _last, new Resolved(endpoint, address));
        return address;
    }

    /// <summary>RFC 9110 7.6.1 and YARP's list: fields for one hop only, never passed on; Content-Length and the mesh's own fields are written by the head writer itself.</summary>
    private static bool SkipsRequestField(string name) => name.Length switch
    {
        2 => name.Equals("TE", StringComparison.OrdinalIgnoreCase),
        4 => name.Equals("ALPN", StringComparison.OrdinalIgnoreCase),
        5 => name.Equals("Close", StringComparison.OrdinalIgnoreCase),
        7 => name.Equals("Upgrade", StringComparison.OrdinalIgnoreCase),
        10 => name.Equals("Connection", StringComparison.OrdinalIgnoreCase) || name.Equals("Keep-Alive", StringComparison.OrdinalIgnoreCase),
        13 => name.Equals("HTTP2-Settings", StringComparison.OrdinalIgnoreCase),
        14 => name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase) || name.Equals("Proxy-Features", StringComparison.OrdinalIgnoreCase),
        15 => name.Equals("x-forwarded-for", StringComparison.OrdinalIgnoreCase) || name.Equals("Security-Scheme", StringComparison.OrdinalIgnoreCase),
        16 => name.Equals(PeerMetadata.HeaderName, StringComparison.OrdinalIgnoreCase) || name.Equals("Proxy-Connection", StringComparison.OrdinalIgnoreCase),
        17 => name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase) || name.Equals("x-forwarded-proto", StringComparison.OrdinalIgnoreCase) ||
              name.Equals("Proxy-Instruction", StringComparison.OrdinalIgnoreCase),
        18 => name.Equals("Proxy-Authenticate", StringComparison.OrdinalIgnoreCase),
        19 => name.Equals("Proxy-Authorization", StringComparison.OrdinalIgnoreCase),
        23 => name.Equals(MeshRequestTransformer.ClientCertHeader, StringComparison.OrdinalIgnoreCase),
        25 => name.Equals("Proxy-Authentication-Info", StringComparison.OrdinalIgnoreCase),
        _ => false,
    };

    /// <summary>Response fields the caller never gets from the app: hop-by-hop ones, the framing (Kestrel frames the response itself) and peer metadata.</summary>
    private static bool SkipsResponseField(ReadOnlySpan<byte> name) => name.Length switch
    {
        7 => Ascii.EqualsIgnoreCase(name, "upgrade"u8),
        10 => Ascii.EqualsIgnoreCase(name, "connection"u8) || Ascii.EqualsIgnoreCase(name, "keep-alive"u8),
        14 => Ascii.EqualsIgnoreCase(name, "content-length"u8),
        16 => Ascii.EqualsIgnoreCase(name, "x-meshproxy-peer"u8) || Ascii.EqualsIgnoreCase(name, "proxy-connection"u8),
        17 => Ascii.EqualsIgnoreCase(name, "transfer-encoding"u8),
        _ => false,
    };

    /// <summary>The common response field names, so that they cost no string per response.</summary>
    private static string NameOf(ReadOnlySpan<byte> name) => name.Length switch
    {
        3 when Ascii.EqualsIgnoreCase(name, "age"u8) => "Age",
        4 when Ascii.EqualsIgnoreCase(name, "date"u8) => "Date",
        4 when Ascii.EqualsIgnoreCase(name, "etag"u8) => "ETag",
        4 when Ascii.EqualsIgnoreCase(name, "vary"u8) => "Vary",
        6 when Ascii.EqualsIgnoreCase(name, "server"u8) => "Server",
        7 when Ascii.EqualsIgnoreCase(name, "expires"u8) => "Expires",
        8 when Ascii.EqualsIgnoreCase(name, "location"u8) => "Location",
        10 when Ascii.EqualsIgnoreCase(name, "set-cookie"u8) => "Set-Cookie",
        12 when Ascii.EqualsIgnoreCase(name, "content-type"u8) => "Content-Type",
        12 when Ascii.EqualsIgnoreCase(name, "x-request-id"u8) => RequestIds.HeaderName,
        13 when Ascii.EqualsIgnoreCase(name, "accept-ranges"u8) => "Accept-Ranges",
        13 when Ascii.EqualsIgnoreCase(name, "cache-control"u8) => "Cache-Control",
        13 when Ascii.EqualsIgnoreCase(name, "last-modified"u8) => "Last-Modified",
        16 when Ascii.EqualsIgnoreCase(name, "content-encoding"u8) => "Content-Encoding",
        _ => Latin1.GetString(name),
    };

    /// <summary>One request over one connection: head, body, response. A class for its async state, made once per request.</summary>
    private sealed class LeanExchange(LeanForwarder owner, HttpContext context, UpstreamConnection connection, bool chunked, bool hasBody, string? peerHeader)
    {
        private readonly HttpResponse _response = context.Response;
        private ResponseHead _head;
        private int _written;

        /// <summary>The attempt failed before a byte of response arrived.</summary>
        public bool NothingReceived { get; private set; } = true;

        public async ValueTask<ForwarderError> RunAsync()
        {
            var reuse = false;
            var aborted = context.RequestAborted;
            var registration = connection.Begin(aborted);
            Task<ForwarderError>? body = null;
            try
            {
                // 1. The head, written whole before anything is sent: a request that cannot be written fails here, untouched.
                if (WriteHead() is { } unsendable)
                {
                    reuse = true;
                    return unsendable;
                }

                UpstreamTiming.Of(context)?.RequestSent();
                try
                {
                    await connection.SendAsync(connection.WriteBuffer.AsMemory(0, _written));
                }
                catch (Exception e) when (IsIoFailure(e))
                {
                    return Fail(context, aborted.IsCancellationRequested ? ForwarderError.RequestCanceled : ForwarderError.Request, e);
                }

                // 2. The body streams on its own while the response is awaited: an app may answer before it has read it all.
                if (hasBody)
                {
                    body = SendBodyAsync();
                }

                // 3. The response head.
                var error = await ReadHeadAsync();
                if (error != ForwarderError.None)
                {
                    return await BodyFailure(body) ?? error;
                }

                UpstreamTiming.Of(context)?.ResponseHeadersReceived();
                CopyHead();

                // 4. The response body, streamed.
                error = await CopyBodyAsync();
                if (error != ForwarderError.None)
                {
                    return await BodyFailure(body) ?? error;
                }

                if (body is not null)
                {
                    if (!body.IsCompleted)
                    {
                        // Answered before the app read the whole request body: the connection cannot carry another request.
                        connection.Dispose();
                    }

                    if (await body != ForwarderError.None)
                    {
                        // The response is complete and is what the caller gets; the request body's failure only ends the connection.
                        context.Features.Put<IForwarderErrorFeature>(null);
                        return ForwarderError.None;
                    }
                }

                reuse = _head.Reusable;
                return ForwarderError.None;
            }
            finally
            {
                registration.Dispose();
                if (reuse && connection.End() && connection.ReadStart == connection.ReadEnd)
                {
                    owner._pool.Return(connection);
                }
                else
                {
                    connection.Dispose();
                }
            }
        }

        /// <summary>Method, the authorized path, headers as MeshRequestTransformer changes them, framing; null when written, else the error.</summary>
        private ForwarderError? WriteHead()
        {
            var request = context.Request;
            var path = context.Features.Find<AuthorizedPathFeature>()?.Path ?? request.PathBase.Add(request.Path).ToUriComponent();
            var query = request.QueryString.Value;
            var peer = PeerIdentity.Of(context);
            var remote = context.Connection.RemoteIpAddress?.ToString();
            var writer = new HeadWriter(connection);
            writer.Ascii(request.Method);
            writer.Byte((byte)' ');
            if (!writer.Target(path) || !writer.Target(query))
            {
                return Fail(context, ForwarderError.RequestCreation, new HttpRequestException(HttpRequestError.Unknown, "the request target has a character that cannot be sent"));
            }

            writer.Bytes(" HTTP/1.1\r\n"u8);
            string? forwardedFor = null;
            foreach (var (name, values) in request.Headers)
            {
                if (SkipsRequestField(name))
                {
                    if (name.Equals("x-forwarded-for", StringComparison.OrdinalIgnoreCase))
                    {
                        forwardedFor = values.ToString();
                    }

                    continue;
                }

                foreach (var value in values)
                {
                    if (!writer.Field(name, value))
                    {
                        // Not ASCII: what SocketsHttpHandler refuses too; the pipeline finds the header and answers 400 DPE.
                        return Fail(context, ForwarderError.Request, new HttpRequestException(HttpRequestError.Unknown, "request headers must contain only ASCII characters"));
                    }
                }
            }

            if (peer is not null)
            {
                writer.Field(MeshRequestTransformer.ClientCertHeader, peer.ForwardedClientCert);
            }

            if (remote is not null)
            {
                writer.Field("x-forwarded-for", string.IsNullOrEmpty(forwardedFor) ? remote : $"{forwardedFor}, {remote}");
            }
            else if (!string.IsNullOrEmpty(forwardedFor))
            {
                writer.Field("x-forwarded-for", forwardedFor);
            }

            writer.Field("x-forwarded-proto", context.Features.Find<ITlsConnectionFeature>() is null ? "http" : "https");
            if (chunked)
            {
                writer.Bytes("Transfer-Encoding: chunked\r\n"u8);
            }
            else if (request.ContentLength is { } length)
            {
                writer.Bytes("Content-Length: "u8);
                writer.Number(length);
                writer.Bytes("\r\n"u8);
            }

            writer.Bytes("\r\n"u8);
            _written = writer.Length;
            return null;
        }

        private async Task<ForwarderError> SendBodyAsync()
        {
            var buffer = ArrayPool<byte>.Shared.Rent(BodyChunkBytes + ChunkHeaderRoom + 2);
            var source = context.Request.Body;
            try
            {
                while (true)
                {
                    int read;
                    try
                    {
                        read = await source.ReadAsync(buffer.AsMemory(ChunkHeaderRoom, BodyChunkBytes), context.RequestAborted);
                    }
                    catch (Exception e) when (e is IOException or OperationCanceledException or BadHttpRequestException or ConnectionResetException or ObjectDisposedException)
                    {
                        CancelConnection();
                        return Fail(context, ForwarderError.RequestBodyClient, e);
                    }

                    try
                    {
                        if (read == 0)
                        {
                            if (chunked)
                            {
                                await connection.SendAsync(LastChunk);
                            }

                            return ForwarderError.None;
                        }

                        if (!chunked)
                        {
                            await connection.SendAsync(buffer.AsMemory(ChunkHeaderRoom, read));
                            continue;
                        }

                        // The chunk's size line goes right in front of its data, so that a chunk is one send.
                        var header = ChunkHeader(read, buffer.AsSpan(0, ChunkHeaderRoom));
                        buffer[ChunkHeaderRoom + read] = (byte)'\r';
                        buffer[ChunkHeaderRoom + read + 1] = (byte)'\n';
                        await connection.SendAsync(buffer.AsMemory(ChunkHeaderRoom - header, header + read + 2));
                    }
                    catch (Exception e) when (IsIoFailure(e))
                    {
                        return Fail(context, context.RequestAborted.IsCancellationRequested ? ForwarderError.RequestBodyClient : ForwarderError.RequestBodyDestination, e);
                    }
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        /// <summary>Writes "{hex size}\r\n" at the end of <paramref name="room"/>; returns its length.</summary>
        private static int ChunkHeader(int size, Span<byte> room)
        {
            var at = room.Length;
            room[--at] = (byte)'\n';
            room[--at] = (byte)'\r';
            do
            {
                room[--at] = (byte)"0123456789abcdef"[size & 0xF];
                size >>= 4;
            }
            while (size != 0);
            return room.Length - at;
        }

        private async ValueTask<ForwarderError> ReadHeadAsync()
        {
            var isHead = HttpMethods.IsHead(context.Request.Method);
            while (true)
            {
                var unread = connection.ReadBuffer.AsSpan(connection.ReadStart, connection.ReadEnd - connection.ReadStart);
                var status = ResponseHeadParser.Parse(unread, isHead, connection.Fields, out _head, out var violation);
                if (status == HeadParseStatus.Complete)
                {
                    if (_head.StatusCode >= 200)
                    {
                        return ForwarderError.None;
                    }

                    // An interim response (103 Early Hints, a 100 not asked for): not passed on, as SocketsHttpHandler does.
                    connection.ReadStart += _head.Length;
                    continue;
                }

                if (status == HeadParseStatus.Incomplete && unread.Length >= UpstreamConnection.MaxHeadBytes)
                {
                    (status, violation) = (HeadParseStatus.Invalid, FramingViolation.HeadTooLarge);
                }

                if (status == HeadParseStatus.Invalid)
                {
                    NothingReceived = false;
                    return Fail(context, ForwarderError.Request, new UpstreamProtocolException(violation.ToString()));
                }

                int received;
                try
                {
                    received = await connection.ReceiveAsync();
                }
                catch (Exception e) when (IsIoFailure(e))
                {
                    return Fail(context, CancelledError(ForwarderError.RequestCanceled, ForwarderError.RequestTimedOut) ?? ForwarderError.Request, e);
                }

                if (received == 0)
                {
                    return Fail(context, ForwarderError.Request, new HttpRequestException(HttpRequestError.ResponseEnded, "the app closed the connection before the response headers"));
                }

                NothingReceived = false;
                connection.Advance(received);
            }
        }

        private void CopyHead()
        {
            var buffer = connection.ReadBuffer.AsSpan(connection.ReadStart, _head.Length);
            _response.StatusCode = _head.StatusCode;
            var headers = _response.Headers;
            var fields = connection.Fields;
            var cache = connection.LastValues;
            for (var i = 0; i < _head.FieldCount; i++)
            {
                var field = fields[i];
                var name = buffer.Slice(field.NameStart, field.NameLength);
                if (SkipsResponseField(name) || _head.HasConnectionField && IsNominated(buffer, name))
                {
                    continue;
                }

                var value = buffer.Slice(field.ValueStart, field.ValueLength);
                string text;
                if (i < cache.Length && cache[i] is { } previous && System.Text.Ascii.Equals(value, previous))
                {
                    text = previous;
                }
                else
                {
                    text = Latin1.GetString(value);
                    if (i < cache.Length)
                    {
                        cache[i] = text;
                    }
                }

                var key = NameOf(name);
                var existing = headers[key];
                headers[key] = existing.Count == 0 ? new StringValues(text) : StringValues.Concat(existing, text);
            }

            if (_head.Framing == Framing.ContentLength)
            {
                _response.ContentLength = _head.ContentLength;
            }
            else if (_head.Framing == Framing.None && _head.StatusCode is not (204 or 304) && ContentLengthOf(buffer) is { } declared)
            {
                _response.ContentLength = declared; // an answer to HEAD says how long the body would be
            }

            if (peerHeader is not null && PeerIdentity.Of(context) is not null)
            {
                headers[PeerMetadata.HeaderName] = peerHeader;
            }

            connection.ReadStart += _head.Length;
        }

        /// <summary>Content-Length of an answer to HEAD, passed on as the app declared it.</summary>
        private long? ContentLengthOf(ReadOnlySpan<byte> buffer)
        {
            for (var i = 0; i < _head.FieldCount; i++)
            {
                var field = connection.Fields[i];
                if (Ascii.EqualsIgnoreCase(buffer.Slice(field.NameStart, field.NameLength), "content-length"u8) &&
                    ResponseHeadParser.TryDecimal(buffer.Slice(field.ValueStart, field.ValueLength), out var length))
                {
                    return length;
                }
            }

            return null;
        }

        /// <summary>Whether a Connection field of the head names <paramref name="name"/>.</summary>
        private bool IsNominated(ReadOnlySpan<byte> buffer, ReadOnlySpan<byte> name)
        {
            for (var i = 0; i < _head.FieldCount; i++)
            {
                var field = connection.Fields[i];
                if (Ascii.EqualsIgnoreCase(buffer.Slice(field.NameStart, field.NameLength), "connection"u8) &&
                    ResponseHeadParser.HasToken(buffer.Slice(field.ValueStart, field.ValueLength), name))
                {
                    return true;
                }
            }

            return false;
        }

        private async ValueTask<ForwarderError> CopyBodyAsync()
        {
            if (_head.Framing == Framing.None)
            {
                return ForwarderError.None;
            }

            if (_head.Framing != Framing.ContentLength)
            {
                // Telemetry counts a body of undeclared length on its way to the caller, as for the YARP path.
                var feature = context.Features.Find<IHttpResponseBodyFeature>()!;
                context.Features.Put<IHttpResponseBodyFeature>(new CountingResponseBodyFeature(feature));
            }

            var destination = _response.Body;
            var remaining = _head.ContentLength;
            var decoder = default(ChunkedDecoder);
            while (true)
            {
                // Pass on what is buffered.
                while (connection.ReadStart < connection.ReadEnd)
                {
                    var unread = connection.ReadBuffer.AsMemory(connection.ReadStart, connection.ReadEnd - connection.ReadStart);
                    ReadOnlyMemory<byte> data;
                    var done = false;
                    switch (_head.Framing)
                    {
                        case Framing.ContentLength:
                            data = unread[..(int)Math.Min(remaining, unread.Length)];
                            remaining -= data.Length;
                            connection.ReadStart += data.Length;
                            done = remaining == 0;
                            break;
                        case Framing.Chunked:
                            var status = decoder.Decode(unread.Span, out var consumed, out var offset, out var length, out var violation);
                            if (status == ChunkStatus.Invalid)
                            {
                                return Fail(context, ForwarderError.ResponseBodyDestination, new UpstreamProtocolException(violation.ToString()));
                            }

                            data = unread.Slice(offset, length);
                            connection.ReadStart += consumed;
                            done = status == ChunkStatus.Done;
                            break;
                        default:
                            data = unread;
                            connection.ReadStart = connection.ReadEnd;
                            break;
                    }

                    if (!data.IsEmpty)
                    {
                        try
                        {
                            await destination.WriteAsync(data, context.RequestAborted);
                        }
                        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or ConnectionResetException or InvalidOperationException)
                        {
                            return Fail(context, ForwarderError.ResponseBodyClient, e);
                        }
                    }

                    if (done)
                    {
                        return ForwarderError.None;
                    }
                }

                if (_head.Framing == Framing.ContentLength && remaining == 0)
                {
                    return ForwarderError.None;
                }

                // More is needed from the app. When none of the body came with the head, the caller gets the headers
                // now rather than with the first body bytes (long polls, server-sent events), as EarlyResponseHeaders does.
                int received;
                try
                {
                    var pending = connection.ReceiveAsync();
                    if (!pending.IsCompleted && !_response.HasStarted)
                    {
                        await StartEarlyAsync();
                    }

                    received = await pending;
                }
                catch (Exception e) when (IsIoFailure(e))
                {
                    return Fail(context, CancelledError(ForwarderError.ResponseBodyCanceled, ForwarderError.ResponseBodyCanceled) ?? ForwarderError.ResponseBodyDestination, e);
                }

                if (received == 0)
                {
                    return _head.Framing == Framing.UntilClose
                        ? ForwarderError.None
                        : Fail(context, ForwarderError.ResponseBodyDestination, new HttpRequestException(HttpRequestError.ResponseEnded, "the app closed the connection before the end of the response body"));
                }

                connection.Advance(received);
            }
        }

        private async ValueTask StartEarlyAsync()
        {
            try
            {
                await _response.StartAsync(context.RequestAborted);
                await _response.Body.FlushAsync(context.RequestAborted);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
            {
                // The caller is gone: the next write meets the same and reports it (DC).
            }
        }

        /// <summary>When the request body failed first (the caller went away, or the app stopped reading), that is the failure to report.</summary>
        private async ValueTask<ForwarderError?> BodyFailure(Task<ForwarderError>? body)
        {
            if (body is null)
            {
                return null;
            }

            connection.Dispose(); // ends a send still blocked on an app that stopped reading
            var sent = await body;
            if (sent == ForwarderError.None)
            {
                return null;
            }

            return sent;
        }

        /// <summary>After an I/O failure: the caller's abort, the idle timeout, or null when neither cancelled it.</summary>
        private ForwarderError? CancelledError(ForwarderError callerGone, ForwarderError idle) =>
            context.RequestAborted.IsCancellationRequested ? callerGone
            : connection.Token.IsCancellationRequested ? idle
            : null;

        private void CancelConnection() => connection.Dispose();

        private static bool IsIoFailure(Exception e) =>
            e is SocketException or IOException or OperationCanceledException or ObjectDisposedException;
    }

    /// <summary>Writes a request head into a connection's write buffer as ASCII, growing it as needed.</summary>
    private ref struct HeadWriter(UpstreamConnection connection)
    {
        private int _length;

        public readonly int Length => _length;

        public void Bytes(ReadOnlySpan<byte> bytes)
        {
            Reserve(bytes.Length);
            bytes.CopyTo(connection.WriteBuffer.AsSpan(_length));
            _length += bytes.Length;
        }

        public void Byte(byte b)
        {
            Reserve(1);
            connection.WriteBuffer[_length++] = b;
        }

        /// <summary>A method or name Kestrel has validated as a token.</summary>
        public void Ascii(string text) => _ = Text(text);

        /// <summary>Path or query: visible ASCII only (a space or control byte would end the request line early).</summary>
        public bool Target(string? text)
        {
            if (string.IsNullOrEmpty(text))
            {
                return true;
            }

            foreach (var c in text)
            {
                if (c is <= ' ' or >= (char)0x7F or '#')
                {
                    return false;
                }
            }

            return Text(text);
        }

        /// <summary>"name: value\r\n"; false when the value is not ASCII or holds a control character other than HTAB.</summary>
        public bool Field(string name, string? value)
        {
            value ??= string.Empty;
            foreach (var c in value)
            {
                if (c is < ' ' and not '\t' or (char)0x7F)
                {
                    return false;
                }
            }

            if (!Text(name))
            {
                return false;
            }

            Bytes(": "u8);
            if (!Text(value))
            {
                return false;
            }

            Bytes("\r\n"u8);
            return true;
        }

        public void Number(long value)
        {
            Reserve(20);
            value.TryFormat(connection.WriteBuffer.AsSpan(_length), out var written, provider: System.Globalization.CultureInfo.InvariantCulture);
            _length += written;
        }

        private bool Text(string text)
        {
            Reserve(text.Length);
            var status = System.Text.Ascii.FromUtf16(text, connection.WriteBuffer.AsSpan(_length), out var written);
            _length += written;
            return status == OperationStatus.Done;
        }

        private readonly void Reserve(int bytes)
        {
            if (_length + bytes > connection.WriteBuffer.Length)
            {
                var bigger = new byte[Math.Max(connection.WriteBuffer.Length * 2, _length + bytes)];
                connection.WriteBuffer.AsSpan(0, _length).CopyTo(bigger);
                connection.ReplaceWriteBuffer(bigger);
            }
        }
    }

    private sealed record Resolved(UpstreamEndpoint Endpoint, IPEndPoint Address);

    private sealed class ErrorFeature(ForwarderError error, Exception? exception) : IForwarderErrorFeature
    {
        public ForwarderError Error { get; } = error;

        public Exception? Exception { get; } = exception;
    }
}
