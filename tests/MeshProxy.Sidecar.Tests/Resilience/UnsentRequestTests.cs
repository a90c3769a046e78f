using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Telemetry;
using Yarp.ReverseProxy.Forwarder;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>
/// "Never sent", precisely: an HTTP/1.1 request that meets a pooled connection the upstream closed before its
/// first byte is refused by the outbound connection (UpstreamConnector) and classified Unsent, safe to resend
/// whatever its method; a close after the request went out stays an ordinary reset. Real SocketsHttpHandler,
/// real sockets, a raw HTTP/1.1 server.
/// </summary>
public sealed class UnsentRequestTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_post_on_a_pooled_connection_the_upstream_closed_before_its_first_byte_is_refused_unsent()
    {
        var (failure, requestsSeen) = await SecondPostFailsAsync(closeBeforeItsFirstByte: true);
        Assert.Contains(Chain(failure), e => e is UnsentRequestException);
        Assert.Equal(FailureKind.Unsent, ResilientForwarder.Classify(ForwarderError.Request, failure));
        Assert.Equal(1, requestsSeen); // the second never reached it
    }

    [Fact]
    public async Task A_post_the_upstream_closed_on_after_it_was_written_is_an_ordinary_reset()
    {
        // Same connection, same silent close, but the upstream read the request first: it may have been processed.
        var (failure, requestsSeen) = await SecondPostFailsAsync(closeBeforeItsFirstByte: false);
        Assert.DoesNotContain(Chain(failure), e => e is UnsentRequestException);
        Assert.Equal(FailureKind.Reset, ResilientForwarder.Classify(ForwarderError.Request, failure));
        Assert.Equal(2, requestsSeen);
    }

    [Fact]
    public void Classification_of_failures_before_a_response()
    {
        var unsent = new UnsentRequestException();

        // GET: the handler wraps the refused write; POST: the forwarder reports the body copy's error first.
        Assert.Equal(FailureKind.Unsent, ResilientForwarder.Classify(ForwarderError.Request, new HttpRequestException(HttpRequestError.Unknown, "send failed", unsent)));
        Assert.Equal(FailureKind.Unsent, ResilientForwarder.Classify(ForwarderError.RequestBodyDestination,
            new AggregateException(unsent, new HttpRequestException("content length mismatch"))));

        // The keep-alive race seen only after the request went out proves nothing: a reset.
        Assert.Equal(FailureKind.Reset, ResilientForwarder.Classify(ForwarderError.Request,
            new HttpRequestException(HttpRequestError.ResponseEnded, "ended", new HttpIOException(HttpRequestError.ResponseEnded, "premature end"))));
        Assert.Equal(FailureKind.Reset, ResilientForwarder.Classify(ForwarderError.Request,
            new HttpRequestException(HttpRequestError.Unknown, "reset", new IOException("reset", new SocketException((int)SocketError.ConnectionReset)))));
        Assert.Equal(FailureKind.ConnectFailure, ResilientForwarder.Classify(ForwarderError.Request,
            new HttpRequestException(HttpRequestError.ConnectionError, "refused", new SocketException((int)SocketError.ConnectionRefused))));

        // Once a response has started nothing is "unsent".
        Assert.Equal(FailureKind.Other, ResilientForwarder.Classify(ForwarderError.ResponseBodyDestination, new IOException("x", unsent)));

        // Past its free resends, an unsent request retries like one that never connected.
        Assert.True(RetryPolicy.Default.MatchesFailure(FailureKind.Unsent));
        Assert.False(RetryPolicy.None.MatchesFailure(FailureKind.Unsent));

        // The flag the caller sees if it is never sent at all: UC, the upstream closed the connection.
        Assert.Equal(ResponseFlags.UpstreamConnectionTermination, UpstreamFailure.Classify(ForwarderError.Request, new HttpRequestException("x", unsent)).Flags);
    }

    /// <summary>
    /// Two POSTs on one keep-alive connection; the server closes it either before the second's first byte is
    /// written or after it has read the second. Returns the second's failure and how many requests the server read.
    /// </summary>
    private static async Task<(HttpRequestException Failure, int RequestsSeen)> SecondPostFailsAsync(bool closeBeforeItsFirstByte)
    {
        await using var server = await KeepAliveServer.StartAsync(closeAfterSecondRequestArrives: !closeBeforeItsFirstByte);
        using var client = new HttpClient(Handler(server, closeBeforeSecondRequest: closeBeforeItsFirstByte));
        using (var first = await client.PostAsync(server.Url, new StringContent("charge 1"), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        var failure = await Assert.ThrowsAsync<HttpRequestException>(() => client.PostAsync(server.Url, new StringContent("charge 2"), Ct));
        return (failure, server.Requests);
    }

    private static IEnumerable<Exception> Chain(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            yield return x;
        }
    }

    /// <summary>
    /// The outbound connector's HTTP/1.1 connections under a layer that, on the second request's first write (the
    /// handler has taken the pooled connection and started its read-ahead), can make the server close first and
    /// wait until the end of stream has reached this socket: the window the race leaves, made certain.
    /// </summary>
    private static SocketsHttpHandler Handler(KeepAliveServer server, bool closeBeforeSecondRequest) => new()
    {
        UseProxy = false,
        ConnectCallback = async (context, ct) =>
        {
            var connection = await UpstreamConnector.ConnectAsync(context, ct);
            return closeBeforeSecondRequest ? new CloseBeforeSecondRequest(connection, server) : connection;
        },
    };

    private sealed class CloseBeforeSecondRequest(Stream inner, KeepAliveServer server) : DelegatingStream(inner, leaveOpen: false)
    {
        private int _reads;
        private int _writesStarted;
        private int _readsAtWrite = -1;

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            _reads++;
            return Inner.ReadAsync(buffer, cancellationToken);
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_reads != _readsAtWrite && ++_writesStarted == 2)
            {
                server.CloseConnection();
                var socket = ((NetworkStream)Inner).Socket;
                using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                while (!(socket.Poll(0, SelectMode.SelectRead) && socket.Available == 0))
                {
                    await Task.Delay(10, wait.Token);
                }
            }

            _readsAtWrite = _reads;
            await Inner.WriteAsync(buffer, cancellationToken);
        }
    }

    /// <summary>HTTP/1.1 on one connection: answers each request 200 with keep-alive, closing where the test says.</summary>
    private sealed class KeepAliveServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly bool _closeAfterSecond;
        private Socket? _connection;
        private Task? _serving;
        private int _requests;

        private KeepAliveServer(bool closeAfterSecond) => _closeAfterSecond = closeAfterSecond;

        public string Url => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/charges";

        public int Requests => Volatile.Read(ref _requests);

        public static Task<KeepAliveServer> StartAsync(bool closeAfterSecondRequestArrives)
        {
            var server = new KeepAliveServer(closeAfterSecondRequestArrives);
            server._listener.Start();
            server._serving = server.ServeAsync();
            return Task.FromResult(server);
        }

        /// <summary>Closes the connection as a server closes an idle keep-alive one (FIN, nothing unread).</summary>
        public void CloseConnection() => _connection?.Close();

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            _connection?.Dispose();
            try
            {
                await _serving!;
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
            {
            }
        }

        private async Task ServeAsync()
        {
            _connection = await _listener.AcceptSocketAsync();
            var received = new StringBuilder();
            var buffer = new byte[4096];
            while (true)
            {
                int n;
                try
                {
                    n = await _connection.ReceiveAsync(buffer);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }

                if (n == 0)
                {
                    return;
                }

                received.Append(Encoding.ASCII.GetString(buffer, 0, n));
                while (TryTakeRequest(received))
                {
                    if (Interlocked.Increment(ref _requests) == 2 && _closeAfterSecond)
                    {
                        _connection.Close();
                        return;
                    }

                    await _connection.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"u8.ToArray());
                }
            }
        }

        /// <summary>Removes one whole request (head and Content-Length body) from the front, if there is one.</summary>
        private static bool TryTakeRequest(StringBuilder received)
        {
            var text = received.ToString();
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end < 0)
            {
                return false;
            }

            var length = 0;
            foreach (var line in text[..end].Split("\r\n"))
            {
                if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                {
                    length = int.Parse(line["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                }
            }

            if (text.Length < end + 4 + length)
            {
                return false;
            }

            received.Remove(0, end + 4 + length);
            return true;
        }
    }
}
