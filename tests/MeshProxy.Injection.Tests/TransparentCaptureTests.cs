using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity;
using System.Text.Json;
using System.Text.Json.Nodes;
using MeshProxy.Injection.Tests.Infrastructure;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// Two network namespaces play two injected pods (10.200.0.1 and 10.200.0.2 on a veth pair of their
/// own; nothing leaves them). Each gets its capture from meshproxy-init run with the arguments the
/// webhook put in the pod, an unmodified app (a Python HTTP server on 0.0.0.0:8080) and the real
/// sidecar as uid 1337. The apps call each other by address and port as if there were no mesh.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class TransparentCaptureTests
{
    private const string AddressA = "10.200.0.1";
    private const string AddressB = "10.200.0.2";

    [Fact]
    public async Task Apps_calling_each_other_by_address_go_through_both_sidecars_and_cannot_bypass_them()
    {
        Assert.SkipUnless(Environment.UserName == "root", "needs root: network namespaces and iptables");
        var ct = TestContext.Current.CancellationToken;
        await using var pods = await PodPair.CreateAsync();

        // 1. The app in A calls B's app at its address; nothing in the app knows about the mesh.
        var hello = await pods.A.CurlJsonAsync($"http://{AddressB}:8080/hello");
        Assert.Equal("b", hello["app"]!.GetValue<string>());
        Assert.Equal("127.0.0.1", hello["peer"]!.GetValue<string>()); // delivered by B's sidecar on loopback
        Assert.Matches("^[0-9a-f-]{36}$", hello["headers"]!["x-request-id"]!.GetValue<string>());
        Assert.Equal(AddressA, hello["headers"]!["x-forwarded-for"]!.GetValue<string>());

        // Between the sidecars the hop was mutual TLS: B's sidecar verified A's SVID and told its app who called.
        Assert.Equal("https", hello["headers"]!["x-forwarded-proto"]!.GetValue<string>());
        Assert.Contains("URI=spiffe://cluster.local/ns/e2e/sa/a", hello["headers"]!["x-forwarded-client-cert"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.StartsWith("By=spiffe://cluster.local/ns/e2e/sa/b;", hello["headers"]!["x-forwarded-client-cert"]!.GetValue<string>(), StringComparison.Ordinal);

        // The hops, as the kernel sees them: in A, the connection to B:8080 is A's sidecar's own (uid
        // 1337, kept in its pool); in B, that same connection arrived on B's sidecar port 15006.
        Assert.Contains(await pods.A.SocketsAsync(), s => PeerIs(s, AddressB, 8080) && s.Contains("uid:1337", StringComparison.Ordinal));
        Assert.Contains(await pods.B.SocketsAsync(), s => LocalIs(s, AddressB, 15006) && s.Contains(AddressA, StringComparison.Ordinal) && s.Contains("uid:1337", StringComparison.Ordinal));

        // And the other way round.
        var back = await pods.B.CurlJsonAsync($"http://{AddressA}:8080/back");
        Assert.Equal("a", back["app"]!.GetValue<string>());
        Assert.Equal(AddressB, back["headers"]!["x-forwarded-for"]!.GetValue<string>());

        // The metrics counted each call on both sides: the destination's sidecar as mutual TLS between the two
        // SPIFFE IDs, the source's by workload (the calls above were A->B /hello and B->A /back, one each).
        var metricsA = await pods.A.ExecAsync("curl", "-s", "--fail-with-body", "--max-time", "10", "http://127.0.0.1:15020/stats/prometheus");
        var metricsB = await pods.B.ExecAsync("curl", "-s", "--fail-with-body", "--max-time", "10", "http://127.0.0.1:15020/stats/prometheus");
        foreach (var (metrics, from, to) in new[] { (metricsB, "a", "b"), (metricsA, "b", "a") })
        {
            Assert.True(RequestsCounted(metrics, "reporter=\"destination\"", $"source_principal=\"spiffe://cluster.local/ns/e2e/sa/{from}\"",
                $"destination_principal=\"spiffe://cluster.local/ns/e2e/sa/{to}\"", "connection_security_policy=\"mutual_tls\"") == 1, RequestLines(metrics));
        }

        foreach (var (metrics, from, to) in new[] { (metricsA, "a", "b"), (metricsB, "b", "a") })
        {
            Assert.True(RequestsCounted(metrics, "reporter=\"source\"", $"source_workload=\"{from}\"", $"destination_workload=\"{to}\"") == 1, RequestLines(metrics));
        }

        // 2. Outbound capture: the app in A dialling B's sidecar port directly, to skip its own sidecar,
        // still lands in its own sidecar, which knows no such service and, under REGISTRY_ONLY, refuses it.
        var direct = await pods.A.ExecAsync("curl", "-s", "-i", "--max-time", "10", $"http://{AddressB}:15006/hello");
        Assert.Contains("HTTP/1.1 403", direct, StringComparison.Ordinal);
        Assert.Contains("x-meshproxy-response-flags: NR", direct, StringComparison.OrdinalIgnoreCase);

        // 3. Inbound capture: a client in A that escapes outbound capture (running as the proxy's uid)
        // and dials B's app port lands in B's sidecar, which is STRICT: plaintext without a client
        // certificate never reaches B's app.
        var escaped = await pods.A.ExecAsync("setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups",
            "sh", "-c", $"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://{AddressB}:8080/escaped; echo \" exit=$?\"");
        Assert.DoesNotContain("200", escaped, StringComparison.Ordinal);
        Assert.Contains("exit=", escaped, StringComparison.Ordinal);
        Assert.DoesNotContain("exit=0", escaped, StringComparison.Ordinal);

        // 4. The app's own loopback traffic is left alone: A's app is reached directly on 127.0.0.1.
        var local = JsonNode.Parse(await pods.A.ExecAsync("curl", "-s", "--max-time", "10", "http://127.0.0.1:8080/local"))!;
        Assert.Equal("127.0.0.1", local["peer"]!.GetValue<string>());
        Assert.Null(local["headers"]!["x-request-id"]);
        ct.ThrowIfCancellationRequested();
    }

    /// <summary>The istio_requests_total count of 200s over the series that carry every one of <paramref name="labels"/>.</summary>
    private static double RequestsCounted(string exposition, params string[] labels) =>
        exposition.Split('\n')
            .Where(line => line.StartsWith("istio_requests_total{", StringComparison.Ordinal) && line.Contains("response_code=\"200\"", StringComparison.Ordinal) &&
                           labels.All(label => line.Contains(label, StringComparison.Ordinal)))
            .Sum(line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));

    private static string RequestLines(string exposition) =>
        string.Join('\n', exposition.Split('\n').Where(line => line.StartsWith("istio_requests_total{", StringComparison.Ordinal)));

    /// <summary>Two namespaces joined by a veth pair, each with its capture, app and sidecar; all removed on dispose.</summary>
    private sealed class PodPair : IAsyncDisposable
    {
        private readonly string _dir;

        private PodPair(string dir, Pod a, Pod b)
        {
            _dir = dir;
            A = a;
            B = b;
        }

        public Pod A { get; }

        public Pod B { get; }

        public static async Task<PodPair> CreateAsync()
        {
            var id = Guid.NewGuid().ToString("N")[..6];
            var dir = Path.Combine("/tmp", "meshproxy-e2e-" + id);
            Directory.CreateDirectory(dir);
            File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101); // the sidecars (uid 1337) read their config here
            // One mesh CA issues both pods' SVIDs, as the control plane would.
            var ca = CertificateAuthority.LoadOrCreate(Path.Combine(dir, "ca"), new CertificateAuthorityOptions { TrustDomain = "cluster.local" });
            var a = new Pod($"mp-e2e-a-{id}", "a", AddressA, dir, ca);
            var b = new Pod($"mp-e2e-b-{id}", "b", AddressB, dir, ca);
            var pair = new PodPair(dir, a, b);
            try
            {
                await Sh("ip", "netns", "add", a.Namespace);
                await Sh("ip", "netns", "add", b.Namespace);
                await Sh("ip", "link", "add", $"mpa{id}", "type", "veth", "peer", "name", $"mpb{id}");
                await Sh("ip", "link", "set", $"mpa{id}", "netns", a.Namespace);
                await Sh("ip", "link", "set", $"mpb{id}", "netns", b.Namespace);
                await a.StartAsync($"mpa{id}", peer: b);
                await b.StartAsync($"mpb{id}", peer: a);
                return pair;
            }
            catch
            {
                await pair.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await A.DisposeAsync();
            await B.DisposeAsync();
            Directory.Delete(_dir, recursive: true);
        }
    }

    private sealed class Pod(string ns, string name, string address, string dir, CertificateAuthority ca) : IAsyncDisposable
    {
        private readonly List<ExternalProcess> _processes = [];

        public string Namespace => ns;

        public async Task StartAsync(string link, Pod peer)
        {
            await ExecAsync("ip", "link", "set", "lo", "up");
            await ExecAsync("ip", "addr", "add", address + "/24", "dev", link);
            await ExecAsync("ip", "link", "set", link, "up");

            // The capture the webhook decides for a pod with one container port, applied by meshproxy-init.
            var pod = JsonNode.Parse($$$"""{"metadata":{"name":"{{{name}}}"},"spec":{"containers":[{"name":"app","ports":[{"containerPort":8080}]}]}}""")!.AsObject();
            var injected = new SidecarInjector(new InjectorOptions()).Inject(pod, new InjectionTarget("e2e"));
            var args = injected.Pod["spec"]!["initContainers"]![0]!["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToArray();
            await ExecAsync(["dotnet", RepoPaths.Bin("meshproxy-init"), .. args]);

            // The pod's identity: its own key, an SVID for spiffe://cluster.local/ns/e2e/sa/<name> from
            // the mesh CA, and the trust bundle, readable by the sidecar's uid only.
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var csr = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
            var san = new SubjectAlternativeNameBuilder();
            san.AddUri(new Uri($"spiffe://cluster.local/ns/e2e/sa/{name}"));
            csr.CertificateExtensions.Add(san.Build(critical: true));
            var issued = ca.Sign(csr.CreateSigningRequestPem(), SpiffeId.ForWorkload("cluster.local", "e2e", name));
            var chainFile = Path.Combine(dir, name + "-chain.pem");
            var keyFile = Path.Combine(dir, name + "-key.pem");
            var bundleFile = Path.Combine(dir, name + "-bundle.pem");
            File.WriteAllText(chainFile, issued.CertificateChainPem);
            File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
            File.WriteAllText(bundleFile, issued.TrustBundlePem);
            File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            await Sh("chown", "1337:1337", chainFile, keyFile, bundleFile);

            var config = Path.Combine(dir, name + ".yaml");
            File.WriteAllText(config, $$"""
                apiVersion: meshproxy.io/v1alpha1
                kind: Sidecar
                metadata: { name: {{name}}, namespace: e2e }
                spec:
                  workload: { serviceAccount: {{name}} }
                  app: { port: 8080, protocol: HTTP }
                  drainDuration: 1s
                  tls: { certificateChainFile: {{chainFile}}, privateKeyFile: {{keyFile}}, trustBundleFile: {{bundleFile}} }
                ---
                apiVersion: meshproxy.io/v1alpha1
                kind: Service
                metadata: { name: {{peer.Name}}, namespace: e2e }
                spec:
                  addresses: [{{peer.Address}}]
                  ports: [{ port: 8080, targetPort: 8080 }]
                  endpoints: [{ address: {{peer.Address}}, serviceAccount: {{peer.Name}} }]
                """);
            File.SetUnixFileMode(config, (UnixFileMode)0b110_100_100);

            var app = Start("python3", Path.Combine(AppContext.BaseDirectory, "peers", "echo.py"), name, "8080");
            var sidecar = Start("setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups", "env", "HOME=/tmp", "DOTNET_CLI_TELEMETRY_OPTOUT=1",
                "dotnet", RepoPaths.Bin("meshproxy-sidecar"), "--config", config);
            await sidecar.WaitForLineAsync("outbound listener on", TimeSpan.FromSeconds(30));
            await WaitForReadyAsync(app);
        }

        public string Name => name;

        public string Address => address;

        public Task<string> ExecAsync(params string[] command) => Sh(["ip", "netns", "exec", ns, .. command]);

        public async Task<JsonNode> CurlJsonAsync(string url) =>
            JsonNode.Parse(await ExecAsync("curl", "-s", "--fail-with-body", "--max-time", "10", url))!;

        public async Task<string[]> SocketsAsync() =>
            (await ExecAsync("ss", "-tne", "state", "established")).Split('\n');

        public async ValueTask DisposeAsync()
        {
            foreach (var process in _processes)
            {
                await process.DisposeAsync();
            }

            try
            {
                await Sh("ip", "netns", "del", ns); // takes the veth end and every rule with it
            }
            catch (InvalidOperationException)
            {
                // never created
            }
        }

        private ExternalProcess Start(params string[] command)
        {
            var process = ExternalProcess.Start("ip", ["netns", "exec", ns, .. command]);
            _processes.Add(process);
            return process;
        }

        private async Task WaitForReadyAsync(ExternalProcess app)
        {
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (true)
            {
                var ready = await Run.ProcessAsync("ip", ["netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "http://127.0.0.1:15020/ready"]);
                var appUp = await Run.ProcessAsync("ip", ["netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "--max-time", "2", "http://127.0.0.1:8080/"]);
                if (ready.Stdout == "200" && appUp.Exit == 0)
                {
                    return;
                }

                if (DateTime.UtcNow > deadline || app.HasExited)
                {
                    throw new TimeoutException($"{name}: sidecar or app not ready: {app.Output}");
                }

                await Task.Delay(100);
            }
        }
    }

    /// <summary>An <c>ss</c> line whose peer is address:port (dual-stack sockets show it as [::ffff:a.b.c.d]:port).</summary>
    private static bool PeerIs(string ssLine, string address, int port)
    {
        var columns = ssLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return columns.Length > 3 && (columns[3] == $"{address}:{port}" || columns[3] == $"[::ffff:{address}]:{port}");
    }

    private static bool LocalIs(string ssLine, string address, int port)
    {
        var columns = ssLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return columns.Length > 2 && (columns[2] == $"{address}:{port}" || columns[2] == $"[::ffff:{address}]:{port}");
    }

    private static async Task<string> Sh(params string[] command)
    {
        var result = await Run.ProcessAsync(command[0], command[1..]);
        return result.Exit == 0
            ? result.Stdout
            : throw new InvalidOperationException($"'{string.Join(' ', command)}' exited {result.Exit}: {result.Stderr}{result.Stdout}");
    }
}
