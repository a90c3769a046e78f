using System.Net;
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
        await using var app = new RawHttpApp(i => i == 1 ? bad : Ok("fine"));
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
        await using var app = new RawHttpApp(i => i == 3
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
        await using var app = new RawHttpApp(i => Ok($"r{i}"), closeAfterEach: true);
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
        await using var app = new RawHttpApp(_ => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-App: yes\r\n\r\n5\r\nfirst\r\n", then: async stream =>
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
}
