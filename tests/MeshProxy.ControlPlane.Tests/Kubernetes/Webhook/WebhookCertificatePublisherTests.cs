using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using MeshProxy.Cli.Install;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Kubernetes.Webhook;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.ControlPlane.Tests.Install;
using MeshProxy.Injection.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.Webhook;

/// <summary>
/// The injection webhook's TLS from the mesh CA: the control plane (in process, on the fake API server) writes the
/// injector's serving certificate to the Secret the rendered injector Deployment mounts and the mesh trust bundle into
/// the rendered webhook configuration's caBundle; the real injector serves that certificate, and a client that trusts
/// only the caBundle and dials the Service's DNS name (what the API server does) accepts it.
/// </summary>
public sealed class WebhookCertificatePublisherTests : IAsyncLifetime
{
    private static readonly InstallOptions Install = new();
    private static readonly WebhookCertificateOptions Webhook = new(Install.WebhookConfiguration, Install.Namespace, Install.Injector, Install.WebhookSecret);

    private readonly LogCapture _logs = new();
    private FakeKubernetesApiServer _api = null!;
    private k8s.Kubernetes _client = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApiServer.StartAsync();
        _api.RegisterResource("", "v1", "secrets", "Secret", namespaced: true);
        _api.RegisterResource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", namespaced: false);
        _client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = _api.BaseUri.ToString() });
        // What `meshproxy install` renders, for both revisions: the canary's caBundle is its own control plane's business.
        foreach (var options in new[] { Install, new InstallOptions { Revision = "canary" } })
        {
            _api.Apply(InstallManifestTests.Find(InstallManifestTests.Parse(Manifests.Render(options)), "MutatingWebhookConfiguration", options.WebhookConfiguration).ToJsonString());
        }
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task The_control_plane_publishes_a_certificate_that_the_injector_serves_and_the_api_server_would_accept()
    {
        await using var kit = await CaTestKit.StartAsync(
            o => o with { TokenStoreFile = string.Empty },
            host: o => o with { Kubernetes = new KubernetesSourceOptions(), KubernetesClient = _client, Webhook = Webhook },
            logs: _logs);
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(CaBundles(Install.WebhookConfiguration).All(b => b is not null)), "caBundle filled");

        var bundlePem = string.Concat(kit.ControlPlane.Host.Certificates!.Authority.Current.BundlePem);
        Assert.All(CaBundles(Install.WebhookConfiguration), b => Assert.Equal(bundlePem, b));
        Assert.All(CaBundles("meshproxy-sidecar-injector-canary"), b => Assert.Null(b));
        var secret = _api.Get("v1", "Secret", Install.Namespace, Install.WebhookSecret)!;
        Assert.Equal("kubernetes.io/tls", secret["type"]!.GetValue<string>());
        Assert.Equal(bundlePem, Data(secret, "ca.crt"));

        // The injector, started on the Secret's files as the rendered Deployment mounts them, serves it; a client that
        // trusts only the caBundle and asks for the Service's name completes the handshake and gets /healthz.
        var dir = RepoPaths.NewTempDirectory();
        File.WriteAllText(Path.Combine(dir, "tls.crt"), Data(secret, "tls.crt"));
        File.WriteAllText(Path.Combine(dir, "tls.key"), Data(secret, "tls.key"));
        await using var injector = await InjectionWebhookServer.StartAsync(new WebhookServerOptions
        {
            Listen = new IPEndPoint(IPAddress.Loopback, 0),
            CertificateFile = Path.Combine(dir, "tls.crt"),
            KeyFile = Path.Combine(dir, "tls.key"),
        }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, await HealthAsync(injector.Port, Install.InjectorHost, bundlePem));
        // And a client asking for another name refuses it: the certificate names the injector's Service only.
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => HealthAsync(injector.Port, "meshproxy-controlplane.meshproxy-system.svc", bundlePem));

        Assert.Single(_logs.WithEvent(170));
        Assert.Single(_logs.WithEvent(171));
    }

    [Fact]
    public async Task It_asks_the_api_server_for_exactly_what_the_rendered_rbac_grants()
    {
        using var ca = Ca(TimeProvider.System);
        var publisher = Publisher(ca, TimeProvider.System);
        Assert.True(await publisher.PublishOnceAsync(TestContext.Current.CancellationToken));
        _api.ApplyRaw("v1", "Secret", Install.Namespace, Install.WebhookSecret, s =>
        {
            s["data"]!["tls.crt"] = "";
            return s;
        });
        Assert.True(await publisher.PublishOnceAsync(TestContext.Current.CancellationToken));

        var asked = _api.Requests
            .Select(r => r.Split(' '))
            .Select(r => (Method: r[0], Path: r[1].Split('?')[0].TrimEnd('/').Split('/')))
            .Select(r => r.Path[^1] is "secrets" ? $"create secrets" : $"{(r.Method == "GET" ? "get" : "update")} {r.Path[^2]}/{r.Path[^1]}")
            .ToHashSet();
        var objects = InstallManifestTests.Parse(Manifests.Render(Install));
        var granted = new[] { InstallManifestTests.Find(objects, "Role", Install.ControlPlane), InstallManifestTests.Find(objects, "ClusterRole", Install.ControlPlane) }
            .SelectMany(role => role["rules"]!.AsArray())
            .Where(rule => rule!["resources"]!.AsArray().Any(r => r!.GetValue<string>() is "secrets" or "mutatingwebhookconfigurations"))
            .SelectMany(rule =>
                from resource in rule!["resources"]!.AsArray()
                from verb in rule["verbs"]!.AsArray()
                from name in rule["resourceNames"] is JsonArray names ? names.Select(n => "/" + n!.GetValue<string>()) : [string.Empty]
                select $"{verb} {resource}{name}")
            // Rules on other Secrets (the CA's own) are another component's business.
            .Where(g => g.EndsWith($"/{Install.WebhookSecret}", StringComparison.Ordinal) || g.EndsWith($"/{Install.WebhookConfiguration}", StringComparison.Ordinal) || !g.Contains('/', StringComparison.Ordinal))
            .ToHashSet();
        Assert.Equal(granted.Order(StringComparer.Ordinal), asked.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_good_certificate_is_kept_and_one_past_two_thirds_of_its_life_foreign_or_misnamed_is_replaced()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var ca = Ca(clock);
        var publisher = Publisher(ca, clock);
        var ct = TestContext.Current.CancellationToken;

        Assert.True(await publisher.PublishOnceAsync(ct));
        var first = Serial();
        var version = ResourceVersion();
        clock.Advance(TimeSpan.FromDays(19));
        Assert.True(await publisher.PublishOnceAsync(ct));
        Assert.Equal(version, ResourceVersion()); // nothing written: not even the same data again

        clock.Advance(TimeSpan.FromDays(2)); // 21 of 30 days
        Assert.True(await publisher.PublishOnceAsync(ct));
        Assert.NotEqual(first, Serial());
        Assert.Contains(_logs.WithEvent(170), l => l.Contains("(due for renewal)", StringComparison.Ordinal));

        // Another CA's certificate for the right name (an old webhook-certs.sh Secret), then the mesh CA's for the wrong name.
        using var other = Ca(clock);
        var (foreign, foreignKey) = other.Current.Authority.IssueServingCertificate([Install.InjectorHost], TimeSpan.FromDays(30));
        var (misnamed, misnamedKey) = ca.Current.Authority.IssueServingCertificate(["meshproxy-controlplane.meshproxy-system.svc"], TimeSpan.FromDays(30));
        foreach (var (chain, key, reason) in new[] { (foreign, foreignKey, "not signed by the mesh CA"), (misnamed, misnamedKey, $"does not name {Install.InjectorHost}") })
        {
            _api.ApplyRaw("v1", "Secret", Install.Namespace, Install.WebhookSecret, s =>
            {
                s["data"]!["tls.crt"] = Convert.ToBase64String(Encoding.ASCII.GetBytes(chain));
                s["data"]!["tls.key"] = Convert.ToBase64String(Encoding.ASCII.GetBytes(key));
                return s;
            });
            Assert.True(await publisher.PublishOnceAsync(ct));
            Assert.Contains(_logs.WithEvent(170), l => l.Contains($"({reason})", StringComparison.Ordinal));
            using var leaf = X509Certificate2.CreateFromPem(Data(_api.Get("v1", "Secret", Install.Namespace, Install.WebhookSecret)!, "tls.crt"));
            Assert.True(leaf.MatchesHostname(Install.InjectorHost));
            using var verify = new X509Chain();
            verify.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            verify.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            verify.ChainPolicy.VerificationTime = clock.GetUtcNow().UtcDateTime;
            verify.ChainPolicy.CustomTrustStore.AddRange(ca.Current.Bundle.Roots.ToArray());
            Assert.True(verify.Build(leaf), $"{reason}: the replacement does not chain to the mesh CA");
        }

        // Someone empties the caBundle: it is put back.
        _api.ApplyRaw("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", Install.WebhookConfiguration, c =>
        {
            c["webhooks"]![0]!["clientConfig"]!.AsObject().Remove("caBundle");
            return c;
        });
        Assert.True(await publisher.PublishOnceAsync(ct));
        Assert.All(CaBundles(Install.WebhookConfiguration), b => Assert.Equal(string.Concat(ca.Current.BundlePem), b));
    }

    [Fact]
    public async Task Two_replicas_racing_for_the_secret_settle_on_one_certificate_without_a_lost_update()
    {
        using var ca = Ca(TimeProvider.System);
        var publisher = Publisher(ca, TimeProvider.System);
        // The other replica creates the Secret between this one's read and its create.
        string? theirs = null;
        _api.BeforeRequest = request =>
        {
            if (request.StartsWith("POST ", StringComparison.Ordinal) && request.Contains("/secrets", StringComparison.Ordinal) && theirs is null)
            {
                var (chain, key) = ca.Current.Authority.IssueServingCertificate([Install.InjectorHost], TimeSpan.FromDays(30));
                theirs = chain;
                _api.Apply(new JsonObject
                {
                    ["apiVersion"] = "v1",
                    ["kind"] = "Secret",
                    ["metadata"] = new JsonObject { ["name"] = Install.WebhookSecret, ["namespace"] = Install.Namespace },
                    ["type"] = "kubernetes.io/tls",
                    ["data"] = new JsonObject
                    {
                        ["tls.crt"] = B64(chain),
                        ["tls.key"] = B64(key),
                        ["ca.crt"] = B64(string.Concat(ca.Current.BundlePem)),
                    },
                }.ToJsonString());
            }
        };

        Assert.False(await publisher.PublishOnceAsync(TestContext.Current.CancellationToken));
        Assert.Single(_logs.WithEvent(173));
        Assert.True(await publisher.PublishOnceAsync(TestContext.Current.CancellationToken));
        // Theirs is as good as ours would be (same CA): kept, not overwritten.
        Assert.Equal(theirs, Data(_api.Get("v1", "Secret", Install.Namespace, Install.WebhookSecret)!, "tls.crt"));
        Assert.Empty(_logs.WithEvent(170));
    }

    [Fact]
    public async Task Without_its_webhook_configuration_it_still_writes_the_secret_and_says_what_is_missing()
    {
        _api.Delete("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", Install.WebhookConfiguration);
        using var ca = Ca(TimeProvider.System);
        Assert.False(await Publisher(ca, TimeProvider.System).PublishOnceAsync(TestContext.Current.CancellationToken));
        Assert.NotNull(_api.Get("v1", "Secret", Install.Namespace, Install.WebhookSecret));
        Assert.Contains(_logs.WithEvent(172), l => l.Contains($"Mutatingwebhookconfiguration {Install.WebhookConfiguration} does not exist", StringComparison.Ordinal));
    }

    private WebhookCertificatePublisher Publisher(MeshCertificateAuthority ca, TimeProvider time) =>
        new(_client, ca, Webhook, "cluster.local", time, _logs.CreateLogger(nameof(WebhookCertificatePublisher)));

    private static MeshCertificateAuthority Ca(TimeProvider time) => MeshCertificateAuthority.Load(
        new CertificateServiceOptions { CaDirectory = Path.Combine(RepoPaths.NewTempDirectory(), "ca"), TokenStoreFile = string.Empty },
        MeshConfigSpec.Default,
        time,
        NullLoggerFactory.Instance);

    private List<string?> CaBundles(string configuration) =>
        [.. _api.Get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", configuration)!["webhooks"]!.AsArray()
            .Select(w => w!["clientConfig"]!["caBundle"]?.GetValue<string>() is { } b ? Encoding.ASCII.GetString(Convert.FromBase64String(b)) : null)];

    private string Serial()
    {
        using var leaf = X509Certificate2.CreateFromPem(Data(_api.Get("v1", "Secret", Install.Namespace, Install.WebhookSecret)!, "tls.crt"));
        return leaf.SerialNumber;
    }

    private string ResourceVersion() => _api.Get("v1", "Secret", Install.Namespace, Install.WebhookSecret)!["metadata"]!["resourceVersion"]!.GetValue<string>();

    private static string Data(JsonObject secret, string key) => Encoding.ASCII.GetString(Convert.FromBase64String(secret["data"]![key]!.GetValue<string>()));

    private static string B64(string text) => Convert.ToBase64String(Encoding.ASCII.GetBytes(text));

    /// <summary>GET /healthz as the API server calls a webhook: TLS to the Service's name, trusting the caBundle alone.</summary>
    private static async Task<HttpStatusCode> HealthAsync(int port, string host, string caBundlePem)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPem(caBundlePem);
        var trust = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        trust.CustomTrustStore.AddRange(roots);
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(IPAddress.Loopback, port, ct);
                return new NetworkStream(socket, ownsSocket: true);
            },
            SslOptions = new SslClientAuthenticationOptions
            {
                CertificateChainPolicy = trust,
            },
        };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        using var response = await http.GetAsync(new Uri($"https://{host}{WebhookServerOptions.HealthPath}"), TestContext.Current.CancellationToken);
        return response.StatusCode;
    }
}
