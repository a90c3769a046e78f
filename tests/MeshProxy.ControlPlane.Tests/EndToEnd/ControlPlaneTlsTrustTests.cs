using System.Collections.Concurrent;
using System.Globalization;
using System.Text.RegularExpressions;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Identity;
using MeshProxy.Identity.Bootstrap;
using MeshProxy.Sidecar.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// A real sidecar talking to real control planes over TLS (15012) through a relay that keeps its address fixed:
/// the config stream and the CSR trust exactly <c>controlPlane.caFile</c>.
/// </summary>
public sealed class ControlPlaneTlsTrustTests
{
    private const string ControlPlaneTlsIdentityAccount = "meshproxy-controlplane";

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task Config_arrives_from_the_pinned_ca_a_control_plane_from_another_ca_is_refused_and_the_saved_snapshot_serves_until_a_good_one_returns()
    {
        var (work, config, tokens) = await WriteConfigAsync();

        // Same configuration, same trust domain, same SPIFFE ID: only the CA differs.
        await using var good = await StartAsync(config, Path.Combine(work, "ca-good"), tokens);
        await using var impostor = await StartAsync(config, Path.Combine(work, "ca-bad"), tokens);
        await using var relay = new TcpRelay(good.Host.GrpcTlsEndPoint!);

        var bootstrap = await WriteBootstrapAsync(work, tokens, relay.Port, "ca-good/root-cert.pem");

        // Right CA: the config stream and the CSR both go through.
        string version;
        string serial;
        await using (var first = await InProcessSidecar.StartAsync(bootstrap, Fast))
        {
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(first.Store.Current is { Provisional: false, Stale: false }), "config over TLS");
            Assert.Contains(first.Store.Current.Services.VirtualHosts, v => v.DefaultCluster.ServiceName == "api");
            await TestControlPlane.EventuallyAsync(async () => (await good.SynczAsync()).GetArrayLength() == 1, "the good control plane lists the sidecar");
            var identity = first.Services.GetRequiredService<SidecarIdentity>();
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(identity.Store.Current is not null), "certificate over TLS");
            Assert.Equal(CaTestKit.SpiffeId("shop", "web"), identity.Store.Current!.SpiffeId.Value);
            version = first.Store.Current.Version;
            serial = identity.Store.Current.Certificate.SerialNumber;
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(File.Exists(first.Source.SnapshotPath + ".key.pem")), "certificate saved");
        }

        // The address now leads to a control plane whose certificate comes from another CA.
        relay.Target = impostor.Host.GrpcTlsEndPoint!;
        var logs = new CapturingLoggerProvider();
        await using var sidecar = await InProcessSidecar.StartAsync(bootstrap, services =>
        {
            Fast(services);
            services.AddSingleton<ILoggerProvider>(logs);
        });
        Assert.True(sidecar.Store.Current.Stale);
        await TestControlPlane.EventuallyAsync(
            async () => Sample(await MetricsAsync(sidecar), "meshproxy_control_plane_tls_refusals_total{reason=\"untrusted_issuer\"}") >= 2,
            "several refused handshakes");
        // The config stream and the CSR handshake concurrently: a refusal is counted just before it is logged.
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(logs.Lines.Any(l => l.Contains("Refused the control plane", StringComparison.Ordinal))), "the refusal logged");
        var refusal = logs.Lines.First(l => l.Contains("Refused the control plane", StringComparison.Ordinal));
        Assert.Contains("UntrustedIssuer", refusal, StringComparison.Ordinal);
        Assert.Contains("root-cert.pem", refusal, StringComparison.Ordinal);
        Assert.Equal(0, (await impostor.SynczAsync()).GetArrayLength());
        Assert.Equal(version, sidecar.Store.Current.Version);
        Assert.True(sidecar.Store.Current.Stale);
        Assert.Equal(1, Sample(await MetricsAsync(sidecar), "meshproxy_config_stale"));
        // The certificate saved beside the snapshot serves meanwhile (nothing is asked of the impostor's CA).
        Assert.Equal(serial, sidecar.Services.GetRequiredService<SidecarIdentity>().Store.Current?.Certificate.SerialNumber);

        // A good control plane behind the same address: the sidecar recovers on its own.
        relay.Target = good.Host.GrpcTlsEndPoint!;
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(!sidecar.Store.Current.Stale), "confirmed by the good control plane", TimeSpan.FromSeconds(15));
        Assert.Equal(serial, sidecar.Services.GetRequiredService<SidecarIdentity>().Store.Current?.Certificate.SerialNumber); // not due yet
        Assert.Equal(version, sidecar.Store.Current.Version);
    }

    [Fact]
    public async Task A_control_plane_certificate_from_the_pinned_ca_that_names_another_identity_is_refused()
    {
        var (work, config, tokens) = await WriteConfigAsync();
        // The pinned CA itself issued this certificate, but to a workload's identity, not the control plane's.
        await using var impostor = await StartAsync(config, Path.Combine(work, "ca"), tokens, serviceAccount: "web");
        var bootstrap = await WriteBootstrapAsync(work, tokens, impostor.Host.GrpcTlsEndPoint!.Port, "ca/root-cert.pem");

        var logs = new CapturingLoggerProvider();
        await using var sidecar = await InProcessSidecar.StartAsync(bootstrap, services =>
        {
            Fast(services);
            services.AddSingleton<ILoggerProvider>(logs);
        });
        await TestControlPlane.EventuallyAsync(
            async () => Sample(await MetricsAsync(sidecar), "meshproxy_control_plane_tls_refusals_total{reason=\"identity_not_allowed\"}") >= 3,
            "several refused handshakes");
        // The config stream and the CSR handshake concurrently: a refusal is counted just before it is logged.
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(logs.Lines.Any(l => l.Contains("Refused the control plane", StringComparison.Ordinal))), "the refusal logged");
        var refusal = logs.Lines.First(l => l.Contains("Refused the control plane", StringComparison.Ordinal));
        Assert.Contains("/sa/web, not the control plane's spiffe://", refusal, StringComparison.Ordinal);
        Assert.Equal(0, (await impostor.SynczAsync()).GetArrayLength());
        Assert.True(sidecar.Store.Current.Provisional);
        Assert.Null(sidecar.Services.GetRequiredService<SidecarIdentity>().Store.Current);
    }

    /// <summary>A config directory (MeshConfig and one Service) and the token store path, in a fresh work directory.</summary>
    private static async Task<(string Work, string Config, string Tokens)> WriteConfigAsync()
    {
        var work = RepoPaths.NewTempDirectory();
        var config = Path.Combine(work, "config");
        Directory.CreateDirectory(config);
        await File.WriteAllTextAsync(Path.Combine(config, "mesh.yaml"), CaTestKit.MeshYaml(), TestContext.Current.CancellationToken);
        Yaml.Write(config, "services.yaml", Yaml.Service("api", "shop", 80, 18081));
        return (work, config, Path.Combine(work, "tokens.json"));
    }

    /// <summary>The web sidecar's token and bootstrap, naming the control plane at 127.0.0.1:<paramref name="port"/> and trusting only <paramref name="caFile"/>.</summary>
    private static async Task<string> WriteBootstrapAsync(string work, string tokens, int port, string caFile)
    {
        var ct = TestContext.Current.CancellationToken;
        await File.WriteAllTextAsync(Path.Combine(work, "web.token"), LocalTokenStore.Open(tokens).CreateToken("shop", "web") + "\n", ct);
        var bootstrap = Path.Combine(work, "web.yaml");
        await File.WriteAllTextAsync(bootstrap, $$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: web, namespace: shop }
            spec:
              workload: { serviceAccount: web }
              app: { port: 18080 }
              listeners: { outbound: 0, inbound: 0, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
              drainDuration: 0s
              controlPlane: { address: "https://127.0.0.1:{{port}}", tokenFile: web.token, caFile: {{caFile}} }

            """, ct);
        return bootstrap;
    }

    private static void Fast(IServiceCollection services) => InProcessSidecar.FastCertificateAuthority(services);

    private static Task<TestControlPlane> StartAsync(string config, string caDirectory, string tokens, string serviceAccount = ControlPlaneTlsIdentityAccount) =>
        TestControlPlane.StartAsync(config, configure: o => o with
        {
            Certificates = new CertificateServiceOptions
            {
                CaDirectory = caDirectory,
                TokenStoreFile = tokens,
                TlsEndPoint = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0),
                ServiceAccount = serviceAccount,
            },
        });

    private static Task<string> MetricsAsync(InProcessSidecar sidecar) =>
        Http.GetStringAsync(new Uri(sidecar.StatsUri, "/metrics"), TestContext.Current.CancellationToken);

    private static double Sample(string exposition, string series)
    {
        var match = Regex.Match(exposition, "^" + Regex.Escape(series) + " (\\S+)$", RegexOptions.Multiline);
        Assert.True(match.Success, $"no sample {series} in:\n{exposition}");
        return double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IEnumerable<string> Lines => _lines;

        public ILogger CreateLogger(string categoryName) => new Logger(_lines);

        public void Dispose()
        {
        }

        private sealed class Logger(ConcurrentQueue<string> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                lines.Enqueue(formatter(state, exception));
        }
    }
}
