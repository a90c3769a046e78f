using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Grpc.Client;
using MeshProxy.Grpc.Server;
using MeshProxy.Grpc.Tests.Echo;
using MeshProxy.Grpc.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace MeshProxy.Grpc.Tests;

/// <summary>
/// Our client against our server over HTTP/2 + TLS (ALPN h2), hosted on a raw KestrelServer with no
/// WebApplication: HandleAsync is all the server needs.
/// </summary>
public sealed class TlsClientServerTests
{
    private static X509Certificate2 CreateSelfSigned()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], critical: false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
    }

    private static async Task<(KestrelServer Server, Uri Address)> StartAsync(X509Certificate2 certificate)
    {
        // ListenOptions.UseHttps resolves Kestrel's (internal) HTTPS configuration service from
        // ApplicationServices; an unstarted slim host is the public way to get a container with it.
        var hostBuilder = WebApplication.CreateSlimBuilder();
        hostBuilder.WebHost.UseKestrelHttpsConfiguration();
        var services = hostBuilder.Build().Services;
        var loggerFactory = NullLoggerFactory.Instance;
        var options = new KestrelServerOptions { ApplicationServices = services };
        options.ConfigureGrpcKeepAlive();
        options.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            listen.UseHttps(certificate);
        });
        var grpc = new EchoService().Register(new GrpcServerBuilder()).Build();
        var server = new KestrelServer(
            Microsoft.Extensions.Options.Options.Create(options),
            new SocketTransportFactory(Microsoft.Extensions.Options.Options.Create(new SocketTransportOptions()), loggerFactory),
            loggerFactory);
        await server.StartAsync(new DelegateApplication(grpc.HandleAsync), TestContext.Current.CancellationToken);
        var address = server.Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return (server, new Uri(address));
    }

    private static SocketsHttpHandler TrustOnly(X509Certificate2 certificate) => new()
    {
        SslOptions =
        {
            RemoteCertificateValidationCallback = (_, presented, _, _) =>
                presented is not null && presented.GetCertHashString() == certificate.GetCertHashString(),
        },
    };

    private static GrpcCallOptions CallOptions() => new()
    {
        Deadline = DateTimeOffset.UtcNow.AddSeconds(20),
        CancellationToken = TestContext.Current.CancellationToken,
    };

    [Fact]
    public async Task Unary_and_bidi_calls_work_over_tls()
    {
        using var certificate = CreateSelfSigned();
        var (server, address) = await StartAsync(certificate);
        try
        {
            Assert.Equal(Uri.UriSchemeHttps, address.Scheme);
            using var client = new GrpcClient(address, TrustOnly(certificate));

            var reply = await client.UnaryAsync(EchoService.Unary, EchoService.Request("secure"), EchoReply.Parser, CallOptions());
            Assert.Equal("secure", reply.Text);

            await using var call = client.StartDuplex<EchoRequest, EchoReply>(EchoService.Bidi, EchoReply.Parser, CallOptions());
            for (var i = 0; i < 3; i++)
            {
                await call.WriteAsync(EchoService.Request($"t{i}"), TestContext.Current.CancellationToken);
                Assert.Equal($"t{i}", (await call.ReadAsync(TestContext.Current.CancellationToken))!.Text);
            }

            await call.CompleteRequestAsync();
            Assert.Null(await call.ReadAsync(TestContext.Current.CancellationToken));
        }
        finally
        {
            await server.StopAsync(CancellationToken.None);
            server.Dispose();
        }
    }

    [Fact]
    public async Task Untrusted_server_certificate_is_unavailable()
    {
        using var certificate = CreateSelfSigned();
        using var other = CreateSelfSigned();
        var (server, address) = await StartAsync(certificate);
        try
        {
            using var client = new GrpcClient(address, TrustOnly(other));

            var ex = await Assert.ThrowsAsync<GrpcStatusException>(() =>
                client.UnaryAsync(EchoService.Unary, EchoService.Request("x"), EchoReply.Parser, CallOptions()));

            Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
        }
        finally
        {
            await server.StopAsync(CancellationToken.None);
            server.Dispose();
        }
    }

    private sealed class DelegateApplication(RequestDelegate handler) : IHttpApplication<HttpContext>
    {
        public HttpContext CreateContext(IFeatureCollection contextFeatures) => new DefaultHttpContext(contextFeatures);

        public Task ProcessRequestAsync(HttpContext context) => handler(context);

        public void DisposeContext(HttpContext context, Exception? exception)
        {
        }
    }
}
