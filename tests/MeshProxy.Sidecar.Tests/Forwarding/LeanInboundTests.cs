using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Forwarding;

/// <summary>
/// The lean inbound path (Forwarding/Http11) over real sockets: a caller's HTTP/1.1 request through the sidecar's
/// inbound listener to an app written by hand on a socket, which answers what a real app would not.
/// </summary>
public sealed class LeanInboundTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")]
    [InlineData("HTTP/1.1 200 OK\nContent-Length: 2\n\nok")]
    [InlineData("HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok")]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n")]
    public async Task Ambiguous_framing_from_the_app_gets_502_UPE_and_its_connection_is_closed(string bad)
    {
        await using var app = new ScriptedApp(i => i == 1 ? bad : Ok("fine"));
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("app", app.Port));
        using var client = new HttpClient();

        Assert.Equal("fine", await client.GetStringAsync(new Uri(sidecar.InboundUri, "/first"), Ct));
        using var refused = await client.GetAsync(new Uri(sidecar.InboundUri, "/bad"), Ct);
        Assert.Equal(HttpStatusCode.BadGateway, refused.StatusCode);
        Assert.Equal("UPE", refused.Headers.GetValues("x-meshproxy-response-flags").Single());
        Assert.Contains("upstream protocol error", await refused.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);

        // The connection that carried the refused response is never used again: the next request opens another.
        Assert.Equal("fine", await client.GetStringAsync(new Uri(sidecar.InboundUri, "/after"), Ct));
        Assert.Equal(2, app.Accepted);
    }

    [Fact]
    public async Task Connections_to_the_app_are_reused_until_it_says_close()
    {
        await using var app = new ScriptedApp(i => i == 3
            ? "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nlast"
            : Ok($"r{i}"));
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("app", app.Port));
        using var client = new HttpClient();
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal($"r{i}", await client.GetStringAsync(new Uri(sidecar.InboundUri, $"/{i}"), Ct));
        }

        Assert.Equal(1, app.Accepted);
        using var closing = await client.GetAsync(new Uri(sidecar.InboundUri, "/3"), Ct);
        Assert.Equal("last", await closing.Content.ReadAsStringAsync(Ct));
        Assert.False(closing.Headers.Contains("Connection") && closing.Headers.Connection.Contains("close"), "the app's Connection header is for its hop only");
        Assert.Equal("r4", await client.GetStringAsync(new Uri(sidecar.InboundUri, "/4"), Ct));
        Assert.Equal(2, app.Accepted);
    }

    [Fact]
    public async Task An_idle_connection_the_app_closed_does_not_fail_the_next_request()
    {
        // The app answers every request and then closes its connection without saying so.
        await using var app = new ScriptedApp(i => Ok($"r{i}"), closeAfterEach: true);
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("app", app.Port));
        using var client = new HttpClient();
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal($"r{i}", await client.GetStringAsync(new Uri(sidecar.InboundUri, $"/{i}"), Ct));
        }

        Assert.Equal(4, app.Accepted);
    }

    [Fact]
    public async Task A_chunked_response_reaches_the_caller_as_it_comes()
    {
        var rest = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var app = new ScriptedApp(_ => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-App: yes\r\n\r\n5\r\nfirst\r\n", then: async stream =>
        {
            await rest.Task.WaitAsync(Ct);
            await stream.WriteAsync("7\r\n-second\r\n0\r\nX-Trailer: dropped\r\n\r\n"u8.ToArray(), Ct);
        });
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("app", app.Port));
        using var client = new HttpClient();

        using var response = await client.GetAsync(new Uri(sidecar.InboundUri, "/stream"), HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal("yes", response.Headers.GetValues("X-App").Single());
        var body = await response.Content.ReadAsStreamAsync(Ct);
        var first = new byte[5];
        await body.ReadExactlyAsync(first, Ct);
        Assert.Equal("first", Encoding.ASCII.GetString(first)); // before the app has sent the rest
        rest.SetResult();
        Assert.Equal("-second", await new StreamReader(body).ReadToEndAsync(Ct));
    }

    private static string Ok(string body) => $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body.Length}\r\n\r\n{body}";

    /// <summary>
    /// An app on a raw socket: request i (counted over all connections; requests without bodies) gets answer(i)
    /// written as it is, then <c>then</c> runs on the stream; it counts the connections it accepted.
    /// </summary>
    private sealed class ScriptedApp : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly Func<int, string> _answer;
        private readonly Func<NetworkStream, Task>? _then;
        private readonly bool _closeAfterEach;
        private readonly Task _accepting;
        private int _accepted;
        private int _requests = -1;

        public ScriptedApp(Func<int, string> answer, bool closeAfterEach = false, Func<NetworkStream, Task>? then = null)
        {
            _answer = answer;
            _then = then;
            _closeAfterEach = closeAfterEach;
            _listener.Start();
            _accepting = AcceptAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public int Accepted => Volatile.Read(ref _accepted);

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            try
            {
                await _accepting;
            }
            catch (Exception)
            {
                // stopping
            }
        }

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                Interlocked.Increment(ref _accepted);
                _ = ServeAsync(client);
            }
        }

        private async Task ServeAsync(TcpClient client)
        {
            using (client)
            {
                var stream = client.GetStream();
                var buffer = new byte[8192];
                var text = new StringBuilder();
                try
                {
                    while (true)
                    {
                        var n = await stream.ReadAsync(buffer, _stop.Token);
                        if (n == 0)
                        {
                            return;
                        }

                        text.Append(Encoding.ASCII.GetString(buffer, 0, n));
                        int end;
                        while ((end = text.ToString().IndexOf("\r\n\r\n", StringComparison.Ordinal)) >= 0)
                        {
                            text.Remove(0, end + 4);
                            await stream.WriteAsync(Encoding.Latin1.GetBytes(_answer(Interlocked.Increment(ref _requests))), _stop.Token);
                            if (_then is not null)
                            {
                                await _then(stream);
                            }

                            if (_closeAfterEach)
                            {
                                return;
                            }
                        }
                    }
                }
                catch (Exception)
                {
                    // closed by the sidecar, or stopping
                }
            }
        }
    }
}
