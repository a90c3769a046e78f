using System.Net;
using System.Text.Json;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Identity.Bootstrap;
using MeshProxy.Samples.App;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// Issue 19 item 2, auto mTLS: the client sidecar learns its destination's PeerAuthentication from the control
/// plane and sends plaintext to a port the destination puts in DISABLE, mTLS to STRICT and PERMISSIVE. Two real
/// sidecars with SVIDs from the control plane's CA; the destination's app (SampleApp /hello) reports whether the
/// request came with the caller's identity (XFCC, x-forwarded-proto) or in plaintext.
/// The modes are set at workload scope: without capture the destination's inbound port is not the app's port, so a
/// portLevelMtls entry could not name one port for both sidecars (the port-level choice is covered by
/// Sidecar.Tests' AutoMtlsEndpointTests).
/// </summary>
public sealed class AutoMtlsTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    [Fact]
    public async Task The_client_sends_mtls_to_strict_and_permissive_ports_and_plaintext_to_a_disable_port_switching_while_traffic_flows()
    {
        var ct = TestContext.Current.CancellationToken;
        var work = RepoPaths.NewTempDirectory();
        var config = Path.Combine(work, "config");
        Directory.CreateDirectory(config);
        await File.WriteAllTextAsync(Path.Combine(config, "mesh.yaml"), CaTestKit.MeshYaml(), ct);
        var tokens = Path.Combine(work, "tokens.json");

        await using var app = SampleApp.Build("api-app", 0, null, quiet: true);
        await app.StartAsync(ct);
        await using var cp = await TestControlPlane.StartAsync(config, configure: o => o with
        {
            Certificates = new CertificateServiceOptions { CaDirectory = Path.Combine(work, "ca"), TokenStoreFile = tokens },
        });

        Yaml.Write(config, "peer.yaml", Peer("STRICT"));
        await using var api = await InProcessSidecar.StartAsync(
            InProcessSidecar.WriteBootstrap(work, "api", "shop", cp.GrpcUri.ToString(), app.BoundPort(), Token(work, tokens, "api"), labels: new Dictionary<string, string> { ["app"] = "api" }), InProcessSidecar.FastCertificateAuthority);
        await using var web = await InProcessSidecar.StartAsync(
            InProcessSidecar.WriteBootstrap(work, "web", "shop", cp.GrpcUri.ToString(), 18080, Token(work, tokens, "web"), labels: new Dictionary<string, string> { ["app"] = "web" }), InProcessSidecar.FastCertificateAuthority);
        Yaml.Write(config, "services.yaml", $$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: api, namespace: shop }
            spec:
              ports: [{ port: 80, protocol: HTTP }]
              endpoints: [{ address: 127.0.0.1, port: {{api.InboundEndPoint.Port}}, serviceAccount: api, labels: { app: api } }]

            """);
        foreach (var sidecar in new[] { api, web })
        {
            await TestControlPlane.EventuallyAsync(async () => (await Http.GetAsync(new Uri(sidecar.StatsUri, "/ready"), ct)).StatusCode == HttpStatusCode.OK, "ready", TimeSpan.FromSeconds(30));
        }

        // STRICT: mTLS, the caller's identity reaches the app.
        await TestControlPlane.EventuallyAsync(async () => (await HelloAsync(web, ct)).Status == HttpStatusCode.OK, "web reaches api", TimeSpan.FromSeconds(20));
        Assert.Equal(Mtls, (await HelloAsync(web, ct)).Seen);

        // With requests flowing one after another, api goes PERMISSIVE (still mTLS), then DISABLE: plaintext.
        // Neither step fails a request: under PERMISSIVE both are accepted, and a connection keeps the mode it was
        // accepted under, so whichever sidecar applies DISABLE first, the open connection or the new plaintext one
        // is taken.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var results = new List<(HttpStatusCode Status, string Seen)>();
        var traffic = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var result = await HelloAsync(web, CancellationToken.None);
                lock (results)
                {
                    results.Add(result);
                }
            }
        }, CancellationToken.None);

        Yaml.Write(config, "peer.yaml", Peer("PERMISSIVE"));
        await TestControlPlane.EventuallyAsync(
            () => Task.FromResult(new[] { api, web }.All(s => HasMode(s, MtlsMode.Permissive))), "both sidecars have api's PERMISSIVE", TimeSpan.FromSeconds(20));
        Assert.Equal(Mtls, (await HelloAsync(web, ct)).Seen);

        Yaml.Write(config, "peer.yaml", Peer("DISABLE"));
        await TestControlPlane.EventuallyAsync(async () => (await HelloAsync(web, ct)).Seen == Plaintext, "plaintext to the DISABLE workload", TimeSpan.FromSeconds(20));
        await stop.CancelAsync();
        await traffic;
        Assert.NotEmpty(results);
        Assert.All(results, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.Contains(results, r => r.Seen == Plaintext);
        Assert.True(Exposition.Value(await MetricsAsync(api), "meshproxy_tls_plaintext_connections_total{outcome=\"accepted\"}") >= 1);

        // Back to STRICT: mTLS again (the switch back is not traffic-safe: Istio's neither; see the README).
        Yaml.Write(config, "peer.yaml", Peer("STRICT"));
        await TestControlPlane.EventuallyAsync(async () => (await HelloAsync(web, ct)).Seen == Mtls, "mTLS to the STRICT workload again", TimeSpan.FromSeconds(20));
    }

    private static readonly string Mtls = "mtls " + CaTestKit.SpiffeId("shop", "web");
    private const string Plaintext = "plaintext";

    /// <summary>web -> api /hello: the status, and how the app was reached ("mtls &lt;caller&gt;" or "plaintext").</summary>
    private static async Task<(HttpStatusCode Status, string Seen)> HelloAsync(InProcessSidecar web, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(web.OutboundUri, "/hello"));
        request.Headers.Host = "api.shop";
        try
        {
            using var response = await Http.SendAsync(request, ct);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                return (response.StatusCode, await response.Content.ReadAsStringAsync(ct));
            }

            var hello = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct)).RootElement;
            var xfcc = hello.GetProperty("clientCert").GetString()!;
            var uri = xfcc.Split(';').FirstOrDefault(p => p.StartsWith("URI=", StringComparison.Ordinal));
            return (response.StatusCode, hello.GetProperty("forwardedProto").GetString() == "https" && uri is not null ? "mtls " + uri[4..] : Plaintext);
        }
        catch (HttpRequestException ex)
        {
            return (0, ex.Message);
        }
    }

    /// <summary>The sidecar's snapshot in force holds api's PeerAuthentication with <paramref name="mode"/>.</summary>
    private static bool HasMode(InProcessSidecar sidecar, MtlsMode mode) =>
        sidecar.Store.Current.Resources.OfType<PeerAuthenticationResource>().Any(p => p.Spec.Mode == mode);

    /// <summary>api's PeerAuthentication (workload scope, selected by its label).</summary>
    private static string Peer(string mode) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: PeerAuthentication
        metadata: { name: api, namespace: shop }
        spec:
          selector: { matchLabels: { app: api } }
          mtls: { mode: {{mode}} }

        """;

    private static string Token(string work, string tokens, string workload)
    {
        var path = Path.Combine(work, workload + ".token");
        File.WriteAllText(path, LocalTokenStore.Open(tokens).CreateToken("shop", workload) + "\n");
        return Path.GetFileName(path); // relative to the bootstrap, which is written into the same directory
    }

    private static Task<string> MetricsAsync(InProcessSidecar sidecar) =>
        Http.GetStringAsync(new Uri(sidecar.StatsUri, "/metrics"), TestContext.Current.CancellationToken);
}
