using System.Net;
using MeshProxy.Injection.Admission;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Injection.Hosting;

/// <summary>
/// The injection webhook over HTTPS: POST /inject (AdmissionReview), GET /healthz. Its own Kestrel
/// server; a host that already runs ASP.NET Core (the control plane) can instead call
/// <see cref="MapInjectionWebhook"/> on a TLS listener of its own.
/// </summary>
public sealed partial class InjectionWebhookServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private InjectionWebhookServer(WebApplication app) => _app = app;

    /// <summary>The bound port (useful with port 0).</summary>
    public int Port => new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;

    public static async Task<InjectionWebhookServer> StartAsync(WebhookServerOptions options, Action<ILoggingBuilder>? logging = null, CancellationToken cancellationToken = default)
    {
        var certificate = new ReloadingCertificate(options.CertificateFile, options.KeyFile);
        var builder = WebApplication.CreateSlimBuilder();
        if (logging is not null)
        {
            builder.Logging.ClearProviders();
            logging(builder.Logging);
        }

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodySize;
            kestrel.Listen(options.Listen, listen =>
            {
                // The API server speaks HTTP/2 or HTTP/1.1 to webhooks; offer both through ALPN.
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(https => https.ServerCertificateSelector = (_, _) => certificate.Current);
            });
        });
        var app = builder.Build();
        MapInjectionWebhook(app, new AdmissionReviewHandler(new SidecarInjector(options.Injector)));
        await app.StartAsync(cancellationToken);
        return new InjectionWebhookServer(app);
    }

    /// <summary>Adds POST /inject and GET /healthz to an existing ASP.NET Core app.</summary>
    public static IEndpointRouteBuilder MapInjectionWebhook(IEndpointRouteBuilder endpoints, AdmissionReviewHandler handler)
    {
        var logger = endpoints.ServiceProvider.GetRequiredService<ILoggerFactory>().CreateLogger<InjectionWebhookServer>();
        endpoints.MapGet(WebhookServerOptions.HealthPath, () => Results.Text("ok\n"));
        endpoints.MapPost(WebhookServerOptions.InjectPath, async (HttpContext context) =>
        {
            if (!IsJson(context.Request.ContentType))
            {
                context.Response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
                await context.Response.WriteAsync("content-type must be application/json\n", context.RequestAborted);
                return;
            }

            byte[] body;
            try
            {
                using var buffer = new MemoryStream();
                await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
                body = buffer.ToArray();
            }
            catch (Microsoft.AspNetCore.Http.BadHttpRequestException ex)
            {
                context.Response.StatusCode = ex.StatusCode;
                await context.Response.WriteAsync($"{ex.Message}\n", context.RequestAborted);
                return;
            }

            var reply = handler.Handle(body);
            if (reply.StatusCode != StatusCodes.Status200OK)
            {
                RejectedReview(logger, context.Connection.RemoteIpAddress, reply.Detail);
            }
            else if (reply.Outcome is { } outcome)
            {
                Decided(logger, outcome, reply.Detail);
            }
            else
            {
                NotInjected(logger, reply.Detail);
            }

            context.Response.StatusCode = reply.StatusCode;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(reply.Body, context.RequestAborted);
        });
        return endpoints;
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static bool IsJson(string? contentType) =>
        contentType is not null && contentType.Split(';')[0].Trim().Equals("application/json", StringComparison.OrdinalIgnoreCase);

    [LoggerMessage(Level = LogLevel.Information, Message = "pod {Outcome}: {Detail}")]
    private static partial void Decided(ILogger logger, InjectionOutcome outcome, string detail);

    [LoggerMessage(Level = LogLevel.Warning, Message = "pod not injected: {Detail}")]
    private static partial void NotInjected(ILogger logger, string detail);

    [LoggerMessage(Level = LogLevel.Warning, Message = "rejected a request from {Remote}: {Detail}")]
    private static partial void RejectedReview(ILogger logger, IPAddress? remote, string detail);
}
