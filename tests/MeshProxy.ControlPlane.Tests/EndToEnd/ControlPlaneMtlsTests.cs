using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Identity;
using MeshProxy.Identity.Bootstrap;
using MeshProxy.Samples.App;
using MeshProxy.Sidecar.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// Two real sidecars in control-plane mode with <c>controlPlane.tokenFile</c>: each gets its certificate from the real
/// control plane's CA over real HTTP/2, they talk mutual TLS, and /ready, /certs and /metrics tell the truth about it.
/// </summary>
public sealed class ControlPlaneMtlsTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    // Retries within a test's patience (the default backoff grows to 30 s).
    private static readonly CertificateAuthorityClientOptions FastCa = new()
    {
        Rotation = new SvidRotatorOptions { InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromMilliseconds(500) },
    };

    [Fact]
    public async Task Sidecars_get_certificates_from_the_ca_talk_mtls_and_report_it_in_ready_certs_and_metrics()
    {
        var ct = TestContext.Current.CancellationToken;
        var work = RepoPaths.NewTempDirectory();
        var config = Path.Combine(work, "config");
        Directory.CreateDirectory(config);
        await File.WriteAllTextAsync(Path.Combine(config, "mesh.yaml"), CaTestKit.MeshYaml(), ct);
        var tokens = Path.Combine(work, "tokens.json");
        var caDir = Path.Combine(work, "ca");

        await using var app = SampleApp.Build("api-app", 0, null, quiet: true);
        await app.StartAsync(ct);
        await using var cp = await TestControlPlane.StartAsync(config, configure: o => o with
        {
            Certificates = new CertificateServiceOptions { CaDirectory = caDir, TokenStoreFile = tokens },
        });

        // The server side starts with a token the CA refuses: configuration arrives, the certificate does not.
        var apiToken = Path.Combine(work, "api.token");
        await File.WriteAllTextAsync(apiToken, "not-a-token\n", ct);
        var webToken = Path.Combine(work, "web.token");
        await File.WriteAllTextAsync(webToken, LocalTokenStore.Open(tokens).CreateToken("shop", "web") + "\n", ct);

        await using var api = await InProcessSidecar.StartAsync(InProcessSidecar.WriteBootstrap(work, "api", "shop", cp.GrpcUri.ToString(), app.BoundPort(), Path.GetFileName(apiToken)), Fast);
        await using var web = await InProcessSidecar.StartAsync(InProcessSidecar.WriteBootstrap(work, "web", "shop", cp.GrpcUri.ToString(), 18080, Path.GetFileName(webToken)), Fast);

        await TestControlPlane.EventuallyAsync(() => Task.FromResult(api.Store.HasSnapshot), "api's first snapshot");
        await Task.Delay(1000, ct); // several refused CA attempts
        var (status, body) = await GetAsync(new Uri(api.StatsUri, "/ready"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Contains("waiting for the first certificate", body);
        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"invalid_token\"}", await cp.MetricsAsync());
        // No certificate yet: the expiry gauge is absent rather than a misleading 0.
        Assert.DoesNotContain("\nmeshproxy_certificate_expiry_seconds ", await MetricsAsync(api));

        // The token file is read at each attempt: a valid one is enough.
        await File.WriteAllTextAsync(apiToken, LocalTokenStore.Open(tokens).CreateToken("shop", "api") + "\n", ct);
        await TestControlPlane.EventuallyAsync(async () => (await GetAsync(new Uri(api.StatsUri, "/ready"))).Status == HttpStatusCode.OK, "api ready");
        await TestControlPlane.EventuallyAsync(async () => (await GetAsync(new Uri(web.StatsUri, "/ready"))).Status == HttpStatusCode.OK, "web ready");

        // The api Service points at the api sidecar's inbound (mTLS) port, with its service account.
        Yaml.Write(config, "services.yaml", $$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: api, namespace: shop }
            spec:
              ports: [{ port: 80, protocol: HTTP }]
              endpoints: [{ address: 127.0.0.1, port: {{api.InboundEndPoint.Port}}, serviceAccount: api }]

            """);
        await TestControlPlane.EventuallyAsync(
            () => Task.FromResult(web.Store.Current.Services.VirtualHosts.Any(v => v.DefaultCluster.ServiceName == "api")), "web knows the api service");

        // web -> (mTLS) -> api -> app: the app sees the caller's SPIFFE ID in XFCC.
        using (var request = new HttpRequestMessage(HttpMethod.Get, new Uri(web.OutboundUri, "/hello")))
        {
            request.Headers.Host = "api.shop";
            using var response = await Http.SendAsync(request, ct);
            var text = await response.Content.ReadAsStringAsync(ct);
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            var hello = JsonDocument.Parse(text).RootElement;
            var xfcc = hello.GetProperty("clientCert").GetString()!;
            Assert.Contains("URI=" + CaTestKit.SpiffeId("shop", "web"), xfcc);
            Assert.Contains("By=" + CaTestKit.SpiffeId("shop", "api"), xfcc);
            Assert.Equal("https", hello.GetProperty("forwardedProto").GetString());
        }

        // Plaintext to the inbound port is refused (STRICT from the first connection).
        using (var plain = new HttpClient { Timeout = TimeSpan.FromSeconds(5) })
        {
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetAsync(new Uri($"http://{api.InboundEndPoint}/hello"), ct));
        }

        // /certs: the chain the CA issued, the CA's root as the bundle.
        using var root = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(Path.Combine(caDir, "root-cert.pem"), ct));
        var certs = JsonDocument.Parse(await Http.GetStringAsync(new Uri(api.AdminUri, "/certs"), ct)).RootElement;
        Assert.True(certs.GetProperty("enabled").GetBoolean());
        Assert.Equal(CaTestKit.SpiffeId("shop", "api"), certs.GetProperty("spiffeId").GetString());
        var leaf = certs.GetProperty("chain")[0];
        Assert.Equal(root.Subject, leaf.GetProperty("issuer").GetString());
        var bundle = certs.GetProperty("trustBundle");
        Assert.Equal(1, bundle.GetArrayLength());
        Assert.Equal(root.GetCertHashString(HashAlgorithmName.SHA256).ToLowerInvariant(), bundle[0].GetProperty("sha256").GetString());
        Assert.InRange(certs.GetProperty("secondsToExpiry").GetDouble(), TimeSpan.FromHours(23).TotalSeconds, TimeSpan.FromHours(24).TotalSeconds);

        // /metrics: the new series with sane values, and an exposition promtool accepts.
        var apiMetrics = await MetricsAsync(api);
        var webMetrics = await MetricsAsync(web);
        Assert.InRange(Exposition.Value(apiMetrics, "meshproxy_certificate_expiry_seconds"), TimeSpan.FromHours(23).TotalSeconds, TimeSpan.FromHours(24).TotalSeconds);
        Assert.True(Exposition.Value(apiMetrics, "meshproxy_tls_handshakes_total{direction=\"inbound\"}") >= 1);
        Assert.True(Exposition.Value(webMetrics, "meshproxy_tls_handshakes_total{direction=\"outbound\"}") >= 1);
        Assert.True(Exposition.Value(apiMetrics, "meshproxy_tls_plaintext_connections_total{outcome=\"refused\"}") >= 1);
        Assert.Equal(0, Exposition.Value(webMetrics, "meshproxy_tls_peer_refusals_total{direction=\"outbound\",reason=\"identity_not_allowed\"}"));
        Assert.Equal(0, Exposition.Value(webMetrics, "meshproxy_config_stale"));
        Assert.Equal(0, Exposition.Value(webMetrics, "meshproxy_config_nacks_total"));
        var cluster = web.Store.Current.Services.VirtualHosts.First(v => v.DefaultCluster.ServiceName == "api").DefaultCluster.Name;
        Assert.Equal(0, Exposition.Value(webMetrics, $"meshproxy_upstream_retries_total{{cluster=\"{cluster}\"}}"));
        Assert.Equal(0, Exposition.Value(webMetrics, $"meshproxy_outlier_ejected_endpoints{{cluster=\"{cluster}\"}}"));
        await PromtoolAsync(apiMetrics);
        await PromtoolAsync(webMetrics);
    }

    private static void Fast(IServiceCollection services) => services.AddSingleton(FastCa);

    private static async Task<(HttpStatusCode Status, string Body)> GetAsync(Uri uri)
    {
        using var response = await Http.GetAsync(uri, TestContext.Current.CancellationToken);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
    }

    private static Task<string> MetricsAsync(InProcessSidecar sidecar) =>
        Http.GetStringAsync(new Uri(sidecar.StatsUri, "/metrics"), TestContext.Current.CancellationToken);

    private static async Task PromtoolAsync(string exposition)
    {
        // Exit 3 is lint findings; the only one allowed is Istio's own metric name, which every Istio dashboard uses.
        var (exitCode, output) = await Promtool.CheckMetricsAsync(exposition);
        Assert.True(exitCode is 0 or 3, $"promtool check metrics exited {exitCode}: {output}");
        Assert.All(Promtool.Findings(output), line => Assert.Equal(Promtool.IstioNameLint, line));
    }
}
