using System.Text.Json;
using System.Text.RegularExpressions;
using MeshProxy.Sidecar.Tests.Infrastructure;
using MeshProxy.Sidecar.Tests.Telemetry;

namespace MeshProxy.Sidecar.Tests.Egress;

/// <summary>
/// Egress as a workload meets it, in a network namespace of our own: the app (curl, run as 'nobody')
/// is captured by an iptables REDIRECT on its uid, the sidecar (root) is not, names come from the
/// namespace's own hosts file, and the "external" servers are openssl s_server and the sample app.
/// </summary>
public sealed partial class EgressCaptureTests
{
    private const int OutboundPort = 15001;
    private const int TlsPort = 8443;
    private const int HttpPort = 18080;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Tls_by_sni_http_by_host_and_connect_are_decided_by_egress_policy_and_checked_against_dns()
    {
        await using var world = await EgressWorld.StartAsync();

        // TLS the app speaks itself, passed through untouched: curl verifies the server's own
        // certificate against the server's own CA file, which the sidecar could never forge.
        Assert.Equal("200", await world.AppCurlAsync("--cacert", world.CertFile, "https://allowed.test:8443/"));

        // A denied SNI: the connection is closed before any byte reaches the server (the server's
        // certificate also names denied.test, so only the sidecar can be what refused it).
        Assert.StartsWith("failed", await world.AppCurlAsync("--cacert", world.CertFile, "https://denied.test:8443/"), StringComparison.Ordinal);

        // A spoofed SNI: an allowed name sent to an address that name does not resolve to.
        Assert.StartsWith("failed", await world.AppCurlAsync("--cacert", world.CertFile, "--resolve", "allowed.test:8443:127.0.0.2", "https://allowed.test:8443/"), StringComparison.Ordinal);

        // Plain HTTP by Host: exact, wildcard, the wildcard's own apex (not matched), a denied name, a spoofed Host.
        Assert.Equal("200", await world.AppCurlAsync("http://allowed.test:18080/hello"));
        Assert.Equal("200", await world.AppCurlAsync("http://api.example.test:18080/hello"));
        Assert.Equal("403", await world.AppCurlAsync("http://example.test:18080/hello"));
        Assert.Equal("403", await world.AppCurlAsync("http://denied.test:18080/hello"));
        Assert.Equal("403", await world.AppCurlAsync("--resolve", "allowed.test:18080:127.0.0.2", "http://allowed.test:18080/hello"));
        var body = await world.Ns.ExecAsync("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "curl", "-s", "--max-time", "10", "--resolve", "allowed.test:18080:127.0.0.2", "http://allowed.test:18080/hello");
        Assert.Contains("127.0.0.2 is not an address of allowed.test", body, StringComparison.Ordinal);
        var hello = JsonDocument.Parse(await world.Ns.ExecAsync("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "curl", "-s", "--max-time", "10", "http://api.example.test:18080/hello")).RootElement;
        Assert.Equal("payments", hello.GetProperty("service").GetString()); // really the external server
        Assert.StartsWith("api.example.test", hello.GetProperty("host").GetString(), StringComparison.Ordinal); // Host kept as the app sent it

        // The app using the sidecar as its explicit proxy (root: not captured): CONNECT, then TLS end to end.
        var proxy = $"http://127.0.0.1:{OutboundPort}";
        Assert.Equal("200", await world.CurlAsRootAsync("-x", proxy, "--cacert", world.CertFile, "https://allowed.test:8443/"));
        var refused = await world.CurlAsRootAsync("-x", proxy, "--cacert", world.CertFile, "https://denied.test:8443/");
        Assert.StartsWith("failed", refused, StringComparison.Ordinal);
        Assert.Contains("403", refused, StringComparison.Ordinal); // curl: "CONNECT tunnel failed, response 403"

        // Each refusal was counted with its reason.
        var metrics = await world.Ns.ExecAsync("curl", "-s", "--max-time", "10", $"http://127.0.0.1:{world.StatsPort}/metrics");
        Assert.Equal(1, Count(metrics, "tls", "not_allowed"));
        Assert.Equal(1, Count(metrics, "tls", "spoofed"));
        Assert.Equal(2, Count(metrics, "http", "not_allowed"));
        Assert.Equal(2, Count(metrics, "http", "spoofed"));
        Assert.Equal(1, Count(metrics, "connect", "not_allowed"));
        await world.Sidecar.WaitForLineAsync("egress denied: protocol=tls reason=spoofed host=allowed.test port=8443 original_destination=127.0.0.2:8443", TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Passed_through_tls_and_connect_tunnels_are_counted_in_istio_tcp_bytes_as_the_client_counted_them()
    {
        await using var world = await EgressWorld.StartAsync();

        // Captured TLS, passed through by SNI: every byte of the session is the app's.
        var direct = await world.TlsClientAsync(asApp: true, "direct", "allowed.test", TlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture), world.CertFile);
        var metrics = await world.WaitForTcpClosedAsync(1);
        Assert.Equal(direct.Received, metrics.Sum("istio_tcp_sent_bytes_total", ("reporter", "source")));
        Assert.Equal(direct.Sent, metrics.Sum("istio_tcp_received_bytes_total", ("reporter", "source")));
        var series = Assert.Single(metrics.Find("istio_tcp_sent_bytes_total"));
        Assert.Equal("payments", series.Labels["destination_service_name"]); // the EgressPolicy that allowed it, never the SNI
        Assert.Equal("test", series.Labels["destination_service_namespace"]);
        Assert.Equal("store", series.Labels["source_workload"]);
        Assert.Equal("tcp", series.Labels["request_protocol"]);

        // CONNECT: the tunnelled bytes, not the CONNECT head or the sidecar's "200 Connection Established".
        var tunnel = await world.TlsClientAsync(asApp: false, "connect", "allowed.test", TlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture), world.CertFile,
            "127.0.0.1", OutboundPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
        metrics = await world.WaitForTcpClosedAsync(2);
        Assert.Equal(direct.Received + tunnel.Received, metrics.Sum("istio_tcp_sent_bytes_total", ("reporter", "source")));
        Assert.Equal(direct.Sent + tunnel.Sent, metrics.Sum("istio_tcp_received_bytes_total", ("reporter", "source")));
        Assert.Equal(2, metrics.Sum("istio_tcp_connections_opened_total", ("reporter", "source")));
    }

    private static double Count(string exposition, string protocol, string reason)
    {
        var match = Regex.Match(exposition, $"^meshproxy_egress_denied_total\\{{protocol=\"{protocol}\",reason=\"{reason}\"\\}} (\\S+)$", RegexOptions.Multiline);
        return match.Success ? double.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
    }

    private sealed class EgressWorld : IAsyncDisposable
    {
        private readonly string _hostsDir;
        private readonly string _dir;

        private EgressWorld(NetworkNamespace ns, string dir)
        {
            Ns = ns;
            _dir = dir;
            _hostsDir = Path.Combine("/etc/netns", ns.Name);
        }

        public NetworkNamespace Ns { get; }

        public ExternalProcess Sidecar { get; private set; } = null!;

        public int StatsPort { get; private set; }

        public string CertFile => Path.Combine(_dir, "server.crt");

        public static async Task<EgressWorld> StartAsync()
        {
            var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            var world = new EgressWorld(await NetworkNamespace.CreateAsync(), dir);
            try
            {
                await world.SetUpAsync();
                return world;
            }
            catch
            {
                await world.DisposeAsync();
                throw;
            }
        }

        /// <summary>curl as the captured app; its HTTP status, or "failed ..." with curl's error.</summary>
        public Task<string> AppCurlAsync(params string[] args) =>
            CurlAsync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "curl", .. args]);

        public Task<string> CurlAsRootAsync(params string[] args) => CurlAsync(["curl", .. args]);

        /// <summary>Runs peers/tls-bytes-client.js in the namespace (as the captured app, or as root); the raw bytes it moved.</summary>
        public async Task<(long Sent, long Received)> TlsClientAsync(bool asApp, params string[] args)
        {
            var script = Path.Combine(_dir, "tls-bytes-client.js");
            if (!File.Exists(script))
            {
                File.Copy(RepoPaths.Peer("tls-bytes-client.js"), script);
                await NetworkNamespace.RunAsync("chmod", "644", script);
            }

            string[] node = ["node", script, .. args];
            var output = await Ns.ExecAsync(asApp ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", .. node] : node);
            var result = JsonDocument.Parse(output.Trim().Split('\n')[^1]).RootElement;
            Assert.False(result.TryGetProperty("error", out var error), error.ToString());
            Assert.StartsWith("HTTP/1.0 200", result.GetProperty("status").GetString(), StringComparison.Ordinal);
            return (result.GetProperty("sent").GetInt64(), result.GetProperty("received").GetInt64());
        }

        /// <summary>Scrapes until <paramref name="closed"/> pass-through streams have been counted closed.</summary>
        public async Task<IReadOnlyList<Sample>> WaitForTcpClosedAsync(int closed)
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (true)
            {
                var samples = Exposition.Parse(await Ns.ExecAsync("curl", "-s", "--max-time", "10", $"http://127.0.0.1:{StatsPort}/metrics"));
                if (samples.Sum("istio_tcp_connections_closed_total") >= closed || DateTime.UtcNow > deadline)
                {
                    Assert.Equal(closed, samples.Sum("istio_tcp_connections_closed_total"));
                    return samples;
                }

                await Task.Delay(50, Ct);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Ns.DisposeAsync();
            if (Directory.Exists(_hostsDir))
            {
                Directory.Delete(_hostsDir, recursive: true);
            }

            Directory.Delete(_dir, recursive: true);
        }

        private async Task<string> CurlAsync(string[] command)
        {
            try
            {
                return await Ns.ExecAsync([.. command[..^1], "-s", "-S", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", command[^1]]);
            }
            catch (InvalidOperationException ex)
            {
                return "failed " + ex.Message;
            }
        }

        private async Task SetUpAsync()
        {
            // `ip netns exec` bind-mounts this over /etc/hosts for everything run in the namespace.
            Directory.CreateDirectory(_hostsDir);
            await File.WriteAllTextAsync(Path.Combine(_hostsDir, "hosts"),
                "127.0.0.1 localhost\n127.0.0.1 allowed.test api.example.test example.test denied.test\n", Ct);
            Directory.CreateDirectory(_dir);
            await NetworkNamespace.RunAsync("chmod", "755", _dir);
            await NetworkNamespace.RunAsync("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-keyout", Path.Combine(_dir, "server.key"), "-out", CertFile, "-subj", "/CN=allowed.test",
                "-addext", "subjectAltName=DNS:allowed.test,DNS:denied.test");
            await NetworkNamespace.RunAsync("chmod", "644", CertFile);

            var config = new MeshYaml("store", 1, outboundPort: OutboundPort, inboundPort: 15006).Raw($$"""
                apiVersion: meshproxy.io/v1alpha1
                kind: EgressPolicy
                metadata: { name: payments, namespace: test }
                spec:
                  hosts: [allowed.test, "*.example.test"]
                  ports: [{ number: {{TlsPort}}, protocol: HTTPS }, { number: {{HttpPort}}, protocol: HTTP }]
                """).WriteTo(_dir);

            // Only the app's uid is captured: the sidecar's own connections to the same ports go out as they are.
            await Ns.ExecAsync("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", "65534",
                "-j", "REDIRECT", "--to-ports", OutboundPort.ToString(System.Globalization.CultureInfo.InvariantCulture));

            var tls = Ns.Start("openssl", "s_server", "-accept", $"127.0.0.1:{TlsPort}", "-cert", CertFile, "-key", Path.Combine(_dir, "server.key"), "-www", "-naccept", "100");
            var http = Ns.Start("dotnet", Path.Combine(AppContext.BaseDirectory, "meshproxy-sample-app.dll"), "payments", HttpPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Sidecar = Ns.Start(RepoPaths.Sidecar("--config", config));
            var stats = await Sidecar.WaitForLineAsync("stats listener on", TimeSpan.FromSeconds(30));
            StatsPort = int.Parse(StatsAddress().Match(stats).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            await Sidecar.WaitForLineAsync("outbound listener on", TimeSpan.FromSeconds(30));
            await http.WaitForLineAsync("Now listening", TimeSpan.FromSeconds(30));
            await tls.WaitForLineAsync("ACCEPT", TimeSpan.FromSeconds(10));
        }
    }

    [GeneratedRegex(@"listener on \S+:(\d+)")]
    private static partial Regex StatsAddress();
}
