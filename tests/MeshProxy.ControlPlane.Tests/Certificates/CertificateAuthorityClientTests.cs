using System.Net;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Identity;
using MeshProxy.Identity.Bootstrap;
using MeshProxy.Sidecar.Identity;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.ControlPlane.Tests.Certificates;

/// <summary>The sidecar's CA client against the real control plane over real HTTP/2.</summary>
public sealed class CertificateAuthorityClientTests
{
    private const string TrustDomain = CaTestKit.TrustDomain;

    // Lifetimes of seconds, so that half-life renewals happen within a test; no backdating, or every
    // certificate would already be past its half-life.
    private static readonly CertificateAuthorityClientOptions FastClient = new()
    {
        RequestedTtl = TimeSpan.FromSeconds(8),
        Rotation = new SvidRotatorOptions { InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromSeconds(1) },
    };

    [Fact]
    public async Task Gets_a_certificate_and_renews_it_at_half_life_without_dropping_open_connections()
    {
        await using var env = await Env.StartAsync(o => o with { ClockSkewAllowance = TimeSpan.Zero });
        var server = env.Client("shop", "api");
        var client = env.Client("shop", "web");
        await using (server.Client)
        await using (client.Client)
        {
            await server.Client.StartAsync(TestContext.Current.CancellationToken);
            await client.Client.StartAsync(TestContext.Current.CancellationToken);
            await server.Client.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            await client.Client.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            Assert.Equal(CaTestKit.SpiffeId("shop", "api"), server.Store.SpiffeId!.Value);
            Assert.InRange(server.Client.SecondsToExpiry!.Value, 1, 8);

            await using var echo = MtlsEcho.Server(server.Store, TrustDomain);
            await using var held = await MtlsEchoClient.ConnectAsync(echo.Port, client.Store, TrustDomain, TestContext.Current.CancellationToken);
            var firstSerial = held.ServerCertificate.SerialNumber;

            // Renewal at half-life (4 s ±10 %): the store moves to a new certificate.
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(server.Store.Current!.Certificate.SerialNumber != firstSerial), "server certificate renewed", TimeSpan.FromSeconds(15));

            Assert.Equal("still here", await held.EchoAsync("still here", TestContext.Current.CancellationToken));
            await using var fresh = await MtlsEchoClient.ConnectAsync(echo.Port, client.Store, TrustDomain, TestContext.Current.CancellationToken);
            Assert.NotEqual(firstSerial, fresh.ServerCertificate.SerialNumber);
            Assert.Equal("new", await fresh.EchoAsync("new", TestContext.Current.CancellationToken));
            Assert.InRange(server.Client.SecondsToExpiry!.Value, 1, 8);
        }
    }

    [Fact]
    public async Task Ca_away_at_start_up_is_retried_with_backoff_until_it_comes_back()
    {
        // The CA's port is reserved (bound, not listening: connections are refused) until the control plane listens on it.
        var env = new Env(RepoPaths.NewTempDirectory());
        var workload = env.Client("shop", "web", FastClient with { RequestedTtl = null });
        await using (workload.Client)
        {
            await workload.Client.StartAsync(TestContext.Current.CancellationToken);
            await Task.Delay(1500, TestContext.Current.CancellationToken);
            Assert.False(workload.Client.FirstCertificate.IsCompleted);
            Assert.Null(workload.Client.SecondsToExpiry);

            await env.StartControlPlaneAsync(o => o);
            await using (env)
            {
                await workload.Client.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
                Assert.InRange(workload.Client.SecondsToExpiry!.Value, TimeSpan.FromHours(23).TotalSeconds, TimeSpan.FromHours(24).TotalSeconds);
            }
        }
    }

    [Fact]
    public async Task Wrong_token_is_retried_and_never_installs_anything()
    {
        await using var env = await Env.StartAsync(o => o);
        var workload = env.Client("shop", "web");
        await File.WriteAllTextAsync(workload.TokenFile, "forged", TestContext.Current.CancellationToken);
        await using (workload.Client)
        {
            await workload.Client.StartAsync(TestContext.Current.CancellationToken);
            await Task.Delay(1500, TestContext.Current.CancellationToken);
            Assert.Null(workload.Store.Current);
            Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"invalid_token\"}", await env.ControlPlane!.MetricsAsync());

            // The token file is read at every attempt: fixing it is enough.
            await File.WriteAllTextAsync(workload.TokenFile, env.Token("shop", "web"), TestContext.Current.CancellationToken);
            await workload.Client.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task Root_rotation_under_load_moves_certificates_to_the_new_root_and_fails_no_request()
    {
        var pki = RepoPaths.NewTempDirectory();
        var rootA = await OperatorRootAsync(pki, "a");
        var rootB = await OperatorRootAsync(pki, "b");
        CertificateServiceOptions SignWith(string root, string? extra) => new()
        {
            CaCertChainFile = root + ".pem",
            CaKeyFile = root + "-key.pem",
            CaRootFile = root + ".pem",
            AdditionalRootsFile = extra is null ? null : extra + ".pem",
            TokenStoreFile = string.Empty,
            ClockSkewAllowance = TimeSpan.Zero,
        };
        using var certA = X509Certificate2.CreateFromPem(File.ReadAllText(rootA + ".pem"));
        using var certB = X509Certificate2.CreateFromPem(File.ReadAllText(rootB + ".pem"));

        // Phase 1: root A signs; the bundle already announces B.
        await using var env = await Env.StartAsync(o => SignWith(rootA, rootB) with { TokenStoreFile = o.TokenStoreFile });
        var server = env.Client("shop", "api");
        var client = env.Client("shop", "web");
        await using (server.Client)
        await using (client.Client)
        {
            await server.Client.StartAsync(TestContext.Current.CancellationToken);
            await client.Client.StartAsync(TestContext.Current.CancellationToken);
            await server.Client.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            await client.Client.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            Assert.Equal(certA.Subject, server.Store.Current!.Certificate.Issuer);
            Assert.Equal(2, server.Store.TrustBundle!.Roots.Length);
            await using var echo = MtlsEcho.Server(server.Store, TrustDomain);

            // Load: four loops, each a new mutual-TLS connection and one echo per iteration.
            var load = new MtlsLoad(echo.Port, client.Store, TrustDomain);

            await Task.Delay(2000, TestContext.Current.CancellationToken);

            // Phase 2: the control plane restarts signing with B, still publishing A beside it. Sidecars move
            // at their next renewal; meanwhile A- and B-issued certificates meet, and both verify.
            await env.RestartControlPlaneAsync(o => SignWith(rootB, rootA) with { TokenStoreFile = o.TokenStoreFile });
            await TestControlPlane.EventuallyAsync(
                () => Task.FromResult(server.Store.Current!.Certificate.Issuer == certB.Subject && client.Store.Current!.Certificate.Issuer == certB.Subject),
                "both workloads hold certificates from root B", TimeSpan.FromSeconds(20));

            // Phase 3: A is retired from the bundle once nothing it signed is in use.
            await env.RestartControlPlaneAsync(o => SignWith(rootB, null) with { TokenStoreFile = o.TokenStoreFile });
            await TestControlPlane.EventuallyAsync(
                () => Task.FromResult(server.Store.TrustBundle!.Roots.Length == 1 && client.Store.TrustBundle!.Roots.Length == 1),
                "bundles shrink to root B", TimeSpan.FromSeconds(20));
            await Task.Delay(1000, TestContext.Current.CancellationToken);

            await load.DisposeAsync();
            Assert.Empty(load.Failures);
            Assert.True(load.Ok > 50, $"only {load.Ok} requests");
            Assert.Contains(certA.Subject, load.Issuers);
            Assert.Contains(certB.Subject, load.Issuers);
            Assert.True(server.Store.TrustBundle!.Contains(certB));
        }

        Directory.Delete(pki, recursive: true);
    }

    private static async Task<string> OperatorRootAsync(string dir, string name)
    {
        var path = Path.Combine(dir, name);
        await CaTestKit.RunAsync("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", path + "-key.pem", "-out", path + ".pem",
            "-days", "30", "-subj", $"/O=Operator/CN=Root {name}", "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        return path;
    }

    private sealed record Workload(CertificateAuthorityClient Client, SvidStore Store, string TokenFile);

    /// <summary>
    /// A control plane with a CA on a loopback port reserved for the whole test (so it can go away and come back
    /// there, and nothing else takes it meanwhile; see PortReservation), and workloads.
    /// </summary>
    private sealed class Env : IAsyncDisposable
    {
        private readonly string _work;
        private readonly PortReservation _reserved = new();
        private readonly int _port;

        public Env(string work)
        {
            _work = work;
            _port = _reserved.Port;
            Directory.CreateDirectory(Path.Combine(work, "config"));
            File.WriteAllText(Path.Combine(work, "config", "mesh.yaml"), CaTestKit.MeshYaml());
        }

        public TestControlPlane? ControlPlane { get; private set; }

        private string TokenStore => Path.Combine(_work, "tokens.json");

        public static async Task<Env> StartAsync(Func<CertificateServiceOptions, CertificateServiceOptions> configure)
        {
            var env = new Env(RepoPaths.NewTempDirectory());
            await env.StartControlPlaneAsync(configure);
            return env;
        }

        public async Task StartControlPlaneAsync(Func<CertificateServiceOptions, CertificateServiceOptions> configure)
        {
            var options = configure(new CertificateServiceOptions { CaDirectory = Path.Combine(_work, "ca"), TokenStoreFile = TokenStore });
            ControlPlane = await TestControlPlane.StartAsync(Path.Combine(_work, "config"), _port, o => o with { Certificates = options });
        }

        public async Task RestartControlPlaneAsync(Func<CertificateServiceOptions, CertificateServiceOptions> configure)
        {
            await ControlPlane!.DisposeAsync();
            await StartControlPlaneAsync(configure);
        }

        public string Token(string ns, string sa) => LocalTokenStore.Open(TokenStore).CreateToken(ns, sa);

        public Workload Client(string ns, string sa, CertificateAuthorityClientOptions? options = null)
        {
            var tokenFile = Path.Combine(_work, $"{ns}-{sa}.token");
            File.WriteAllText(tokenFile, Token(ns, sa) + "\n");
            var store = new SvidStore();
            var spec = new ControlPlaneSpec($"http://127.0.0.1:{_port}", tokenFile);
            var client = new CertificateAuthorityClient(spec, Path.Combine(_work, "sidecar.yaml"), SpiffeId.ForWorkload(TrustDomain, ns, sa), store,
                options ?? FastClient, TimeProvider.System, NullLoggerFactory.Instance);
            return new Workload(client, store, tokenFile);
        }

        public async ValueTask DisposeAsync()
        {
            _reserved.Dispose();
            if (ControlPlane is not null)
            {
                await ControlPlane.DisposeAsync();
            }

            try
            {
                Directory.Delete(_work, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
