using System.Net;
using System.Security.Cryptography;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>
/// Bodies larger than any buffer go through without being held whole. Each test pauses one side
/// until the other side has seen the first bytes: a proxy that buffered the body would never let
/// them through, and the pause would time out.
/// </summary>
public sealed class StreamingTests
{
    private const long Total = 64L * 1024 * 1024;
    private const long PauseAfter = 4L * 1024 * 1024;
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_64_MiB_upload_reaches_the_app_while_it_is_still_being_sent()
    {
        var appSawFirstMegabyte = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var app = await ProbeApp.StartAsync(HttpProtocols.Http1, async context =>
        {
            var buffer = new byte[81920];
            long received = 0;
            int n;
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            while ((n = await context.Request.Body.ReadAsync(buffer)) > 0)
            {
                received += n;
                hash.AppendData(buffer, 0, n);
                if (received >= 1024 * 1024)
                {
                    appSawFirstMegabyte.TrySetResult();
                }
            }

            await context.Response.WriteAsync($"{received} {Convert.ToHexString(hash.GetHashAndReset())}");
        });
        await using var sidecar = await TestSidecar.StartAsync(new MeshYaml("uploader", 1).Service("sink", 80, "HTTP", app.Port));

        using var client = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(sidecar.OutboundUri, "/sink"));
        request.Headers.Host = "sink";
        var content = new PausingContent(Total, PauseAfter, appSawFirstMegabyte.Task);
        request.Content = content;
        using var response = await client.SendAsync(request, Ct);
        var answer = await response.Content.ReadAsStringAsync(Ct);
        Assert.Equal($"{Total} {Convert.ToHexString(content.Hash)}", answer);
    }

    [Fact]
    public async Task A_64_MiB_download_reaches_the_caller_while_the_app_is_still_writing()
    {
        var callerSawFirstMegabyte = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sentHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        await using var app = await ProbeApp.StartAsync(HttpProtocols.Http1, async context =>
        {
            context.Response.ContentLength = Total;
            await PausingContent.WriteAsync(context.Response.Body, Total, PauseAfter, callerSawFirstMegabyte.Task, sentHash);
        });
        await using var inbound = await TestSidecar.StartAsync(new MeshYaml("source", app.Port));

        using var client = new HttpClient();
        using var response = await client.GetAsync(new Uri(inbound.InboundUri, "/source"), HttpCompletionOption.ResponseHeadersRead, Ct);
        await using var body = await response.Content.ReadAsStreamAsync(Ct);
        using var receivedHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[81920];
        long received = 0;
        int n;
        while ((n = await body.ReadAsync(buffer, Ct)) > 0)
        {
            received += n;
            receivedHash.AppendData(buffer, 0, n);
            if (received >= 1024 * 1024)
            {
                callerSawFirstMegabyte.TrySetResult();
            }
        }

        Assert.Equal(Total, received);
        Assert.Equal(sentHash.GetHashAndReset(), receivedHash.GetHashAndReset());
    }

    [Fact]
    public async Task Full_duplex_echo_streams_over_http2_through_two_sidecars()
    {
        // Request and response bodies at once, which only HTTP/2 can carry end to end (HttpClient's
        // HTTP/1.1 waits for the whole request body before it reads a response: README, "Limits").
        await using var app = await Backend.StartAsync("echo", http2Only: true);
        await using var billing = await TestSidecar.StartAsync(new MeshYaml("echo", app.Port, "HTTP2"));
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("echo", 80, "HTTP2", billing.Inbound.Port));

        var firstBytesBack = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var client = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(store.OutboundUri, "/echo"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        request.Headers.Host = "echo";
        var upload = new PausingContent(Total, PauseAfter, firstBytesBack.Task);
        request.Content = upload;
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        await using var body = await response.Content.ReadAsStreamAsync(Ct);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[81920];
        long received = 0;
        int n;
        while ((n = await body.ReadAsync(buffer, Ct)) > 0)
        {
            hash.AppendData(buffer, 0, n);
            received += n;
            firstBytesBack.TrySetResult();
        }

        Assert.Equal(Total, received);
        Assert.Equal(upload.Hash, hash.GetHashAndReset());
    }

    /// <summary>A one-endpoint Kestrel app for the probes above.</summary>
    private sealed class ProbeApp : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private ProbeApp(WebApplication app) => _app = app;

        public int Port => MeshProxy.Samples.App.SampleApp.BoundPort(_app);

        public static async Task<ProbeApp> StartAsync(HttpProtocols protocols, RequestDelegate handler)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.Limits.MaxRequestBodySize = null;
                k.Listen(IPAddress.Loopback, 0, l => l.Protocols = protocols);
            });
            var app = builder.Build();
            app.Run(handler);
            await app.StartAsync();
            return new ProbeApp(app);
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
