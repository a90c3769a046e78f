using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Samples.App;

/// <summary>
/// An ordinary HTTP app, unaware of the mesh: the workloads of the local mesh and the backend of the
/// proxy tests. It calls other services by name through its sidecar's outbound port, as an app in a
/// pod would after transparent capture.
/// </summary>
public static class SampleApp
{
    public static WebApplication Build(string name, int port, string? outboundProxy, bool quiet = false, bool http2Only = false)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = null;
            // Cleartext HTTP/2 (h2c) needs an HTTP/2-only endpoint: without TLS, Kestrel cannot offer both.
            k.Listen(System.Net.IPAddress.Loopback, port, l => l.Protocols = http2Only ? HttpProtocols.Http2 : HttpProtocols.Http1);
        });
        if (quiet)
        {
            builder.Logging.ClearProviders();
        }

        builder.Services.AddHttpClient("mesh").ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
        {
            // The sidecar is an explicit HTTP proxy for the app: absolute-form requests, Host kept; for
            // https:// the app asks the sidecar for a CONNECT tunnel and speaks TLS itself through it.
            UseProxy = outboundProxy is not null,
            Proxy = outboundProxy is null ? null : new System.Net.WebProxy(outboundProxy),
            SslOptions = ExternalTls.ClientOptions(),
        });

        var app = builder.Build();
        app.UseWebSockets();
        app.MapGet("/", () => $"{name}\n");
        app.MapGet("/hello", (HttpRequest request) => Results.Json(Describe(name, request)));
        app.Map("/echo", EchoAsync);
        app.MapGet("/bytes", BytesAsync);
        app.MapGet("/slow", async (int ms, CancellationToken ct) =>
        {
            await Task.Delay(ms, ct);
            return $"{name} slept {ms}ms\n";
        });
        var charges = 0;
        app.MapPost("/charges", () =>
        {
            var id = Interlocked.Increment(ref charges);
            return Results.Text($"{name} created charge ch_{id}\n", statusCode: StatusCodes.Status201Created);
        });
        app.MapGet("/status/{code:int}", (int code) => Results.Text($"{name} answered {code}\n", statusCode: code));
        app.Map("/ws", WebSocketEchoAsync);
        app.MapMethods("/call/{service}/{**path}", ["GET", "POST"], async (string service, string? path, HttpRequest request, IHttpClientFactory clients) =>
        {
            using var outbound = new HttpRequestMessage(new HttpMethod(request.Method), $"http://{service}/{path}");
            if (request.ContentLength > 0 || request.Headers.TransferEncoding.Count > 0)
            {
                outbound.Content = new StreamContent(request.Body);
            }

            using var response = await clients.CreateClient("mesh").SendAsync(outbound);
            var body = await response.Content.ReadAsStringAsync();
            return Results.Text(body, response.Content.Headers.ContentType?.ToString(), statusCode: (int)response.StatusCode);
        });
        app.MapGet("/external/{host}/{**path}", async (string host, string? path, IHttpClientFactory clients) =>
        {
            // An API outside the mesh, over HTTPS the app speaks itself (the sidecar sees only the SNI).
            try
            {
                using var response = await clients.CreateClient("mesh").GetAsync(new Uri($"https://{host}/{path}"));
                var body = await response.Content.ReadAsStringAsync();
                return Results.Text(body, response.Content.Headers.ContentType?.ToString(), statusCode: (int)response.StatusCode);
            }
            catch (HttpRequestException ex)
            {
                // The caller wants to see why the tunnel or the handshake failed, not a bare 500.
                return Results.Text($"{name} could not reach {host}: {ex.Message}{(ex.InnerException is { } inner ? " (" + inner.Message + ")" : "")}\n",
                    statusCode: StatusCodes.Status502BadGateway);
            }
        });
        return app;
    }

    public static int BoundPort(this WebApplication app) =>
        new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;

    private static Dictionary<string, object?> Describe(string name, HttpRequest request) => new()
    {
        ["service"] = name,
        ["method"] = request.Method,
        ["path"] = request.Path.Value,
        ["protocol"] = request.Protocol,
        ["host"] = request.Host.Value,
        ["requestId"] = request.Headers["x-request-id"].ToString(),
        ["forwardedFor"] = request.Headers["x-forwarded-for"].ToString(),
        ["forwardedProto"] = request.Headers["x-forwarded-proto"].ToString(),
        ["clientCert"] = request.Headers["x-forwarded-client-cert"].ToString(),
        ["headers"] = request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString()),
    };

    /// <summary>Streams the request body back as it arrives, never holding it whole.</summary>
    private static async Task EchoAsync(HttpContext context)
    {
        context.Response.ContentType = context.Request.ContentType ?? "application/octet-stream";
        await context.Request.Body.CopyToAsync(context.Response.Body, 64 * 1024, context.RequestAborted);
    }

    private static async Task BytesAsync(HttpContext context, long n)
    {
        context.Response.ContentType = "application/octet-stream";
        context.Response.ContentLength = n;
        var chunk = new byte[64 * 1024];
        for (var i = 0; i < chunk.Length; i++)
        {
            chunk[i] = (byte)(i % 251);
        }

        for (long sent = 0; sent < n;)
        {
            var size = (int)Math.Min(chunk.Length, n - sent);
            await context.Response.Body.WriteAsync(chunk.AsMemory(0, size), context.RequestAborted);
            sent += size;
        }
    }

    private static async Task WebSocketEchoAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = 400;
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var buffer = new byte[16 * 1024];
        while (true)
        {
            var result = await socket.ReceiveAsync(buffer, context.RequestAborted);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", context.RequestAborted);
                return;
            }

            await socket.SendAsync(buffer.AsMemory(0, result.Count), result.MessageType, result.EndOfMessage, context.RequestAborted);
        }
    }
}
