using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using MeshProxy.Grpc.Tests.Echo;
using MeshProxy.Grpc.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Grpc.Tests;

/// <summary>Our server driven by a plain HttpClient over h2c, to see exactly what goes on the wire.</summary>
public sealed class ServerHttpTests(GrpcHostFixture fixture) : IClassFixture<GrpcHostFixture>
{
    private static HttpClient NewClient() => new() { Timeout = TimeSpan.FromSeconds(20) };

    private static byte[] Frame(IMessage message, byte flag = 0)
    {
        var body = message.ToByteArray();
        var frame = new byte[5 + body.Length];
        frame[0] = flag;
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(1), body.Length);
        body.CopyTo(frame, 5);
        return frame;
    }

    private HttpRequestMessage Request(string path, byte[] body, string contentType = "application/grpc")
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return new HttpRequestMessage(HttpMethod.Post, new Uri(fixture.Host.Address, path))
        {
            Content = content,
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
    }

    private static async Task<(string? Status, string? Message, byte[] Body, bool InHeaders)> SendAsync(HttpClient client, HttpRequestMessage request)
    {
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/grpc", response.Content.Headers.ContentType?.MediaType);
        var body = await response.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken);
        if (response.Headers.TryGetValues("grpc-status", out var status))
        {
            response.Headers.TryGetValues("grpc-message", out var headerMessage);
            return (status.Single(), headerMessage?.Single(), body, true);
        }

        response.TrailingHeaders.TryGetValues("grpc-status", out var trailerStatus);
        response.TrailingHeaders.TryGetValues("grpc-message", out var message);
        return (trailerStatus?.Single(), message?.Single(), body, false);
    }

    [Fact]
    public async Task Wrong_content_type_is_http_415()
    {
        using var client = NewClient();
        using var request = Request(EchoService.Unary, Frame(new EchoRequest()), "text/plain");

        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
    }

    [Fact]
    public async Task Unknown_method_is_unimplemented_trailers_only()
    {
        using var client = NewClient();

        var (status, message, body, inHeaders) = await SendAsync(client, Request("/meshproxy.test.v1.Echo/Nope", Frame(new EchoRequest())));

        Assert.Equal("12", status);
        Assert.True(inHeaders, "an error before any message must be a Trailers-Only response");
        Assert.Empty(body);
        Assert.Contains("/meshproxy.test.v1.Echo/Nope", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Successful_unary_puts_the_status_in_trailers_after_the_message()
    {
        using var client = NewClient();

        var (status, _, body, inHeaders) = await SendAsync(client, Request(EchoService.Unary, Frame(new EchoRequest { Text = "t" })));

        Assert.Equal("0", status);
        Assert.False(inHeaders);
        Assert.Equal(Frame(new EchoReply { Text = "t" }), body);
    }

    [Fact]
    public async Task Grpc_timeout_alone_makes_the_server_answer_deadline_exceeded()
    {
        using var client = NewClient();
        using var request = Request(EchoService.Unary, Frame(new EchoRequest { Text = "slow", DelayMs = 10_000 }));
        request.Headers.TryAddWithoutValidation("grpc-timeout", "500m");
        var started = DateTime.UtcNow;

        var (status, _, _, _) = await SendAsync(client, request);

        Assert.Equal("4", status);
        Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromMilliseconds(450), TimeSpan.FromSeconds(5));
        await fixture.Host.Service.DelayCancelled.Task.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Malformed_grpc_timeout_is_internal()
    {
        using var client = NewClient();
        using var request = Request(EchoService.Unary, Frame(new EchoRequest()));
        request.Headers.TryAddWithoutValidation("grpc-timeout", "soon");

        var (status, message, _, _) = await SendAsync(client, request);

        Assert.Equal("13", status);
        Assert.Contains("grpc-timeout", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unsupported_grpc_encoding_is_unimplemented()
    {
        using var client = NewClient();
        using var request = Request(EchoService.Unary, Frame(new EchoRequest(), flag: 1));
        request.Headers.TryAddWithoutValidation("grpc-encoding", "gzip");

        var (status, _, _, _) = await SendAsync(client, request);

        Assert.Equal("12", status);
    }

    [Fact]
    public async Task Compressed_message_without_encoding_is_internal()
    {
        using var client = NewClient();

        var (status, message, _, _) = await SendAsync(client, Request(EchoService.Unary, Frame(new EchoRequest(), flag: 1)));

        Assert.Equal("13", status);
        Assert.Contains("compressed", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Empty_request_stream_for_unary_is_internal()
    {
        using var client = NewClient();

        var (status, _, _, _) = await SendAsync(client, Request(EchoService.Unary, []));

        Assert.Equal("13", status);
    }

    [Fact]
    public async Task Handler_exception_is_unknown_without_its_text_and_is_logged()
    {
        using var client = NewClient();

        var (status, message, _, _) = await SendAsync(client, Request(EchoService.Unary, Frame(new EchoRequest { Text = EchoService.ThrowText })));

        Assert.Equal("2", status);
        Assert.DoesNotContain("secret", message, StringComparison.Ordinal);
        Assert.Contains(fixture.Host.Logs.Entries, e =>
            e.Level == LogLevel.Error && e.Exception?.Message == EchoService.SecretDetail && e.Message.Contains(EchoService.Unary, StringComparison.Ordinal));
    }
}
