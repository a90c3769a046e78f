using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using MeshProxy.Cli;
using MeshProxy.Cli.Check;
using MeshProxy.Cli.Install;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.ControlPlane.Tests.Kubernetes;
using MeshProxy.Samples.App;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// Issue 18 item 4, with real processes: two control-plane replicas (meshproxy-controlplane in Kubernetes mode against
/// the fake API server, which keeps the CA's Secret and Lease, so both sign under one root) behind one Service address,
/// made as kube-proxy makes it (<see cref="KubeProxyService"/>: iptables DNAT to a random endpoint), and real sidecar
/// processes whose bootstraps name only that address, as the injector writes them. One replica is killed (SIGKILL)
/// while a load loop runs through the sidecars: no request fails, the sidecars resync with the survivor, and a new
/// sidecar gets its first certificate from the survivor, under the same root. And <c>meshproxy proxy-status</c> and
/// <c>meshproxy check</c>'s "every sidecar is synced" see the sidecars of every replica.
/// </summary>
public sealed partial class ReplicaFailoverTests : IAsyncLifetime
{
    private const string SystemNs = "meshproxy-system";
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private static readonly InstallOptions Install = new();
    private static readonly JsonSerializerOptions WebJson = new(JsonSerializerDefaults.Web);

    private readonly List<IAsyncDisposable> _owned = [];
    private FakeKubernetesApiServer _api = null!;
    private string _work = null!;
    private string _config = null!;
    private string _kubeconfig = null!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApiServer.StartAsync();
        _api.Apply(KubeJson.Namespace(SystemNs));
        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"meshproxy-injection":"enabled"}}}""");
        _work = RepoPaths.NewTempDirectory();
        _config = Path.Combine(_work, "config");
        Directory.CreateDirectory(_config);
        await File.WriteAllTextAsync(Path.Combine(_config, "mesh.yaml"), CaTestKit.MeshYaml(), Ct);
        _kubeconfig = _api.WriteKubeconfig(Path.Combine(_work, "kubeconfig"));
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            await _owned[i].DisposeAsync();
        }

        await _api.DisposeAsync();
    }

    [Fact]
    public async Task A_replica_killed_under_load_costs_no_request_and_no_certificate_and_the_sidecars_resync_with_the_survivor()
    {
        using var apiPorts = new SidecarPorts("api");
        using var webPorts = new SidecarPorts("web");
        using var web2Ports = new SidecarPorts("web");
        await using var app = SampleApp.Build("api-app", 0, null, quiet: true);
        await app.StartAsync(Ct);
        Yaml.Write(_config, "api.yaml", ApiService(apiPorts.Inbound));

        // Started together: they agree on one root, created once, by the Lease's holder.
        var (a, b) = (StartReplica("a"), StartReplica("b"));
        await Task.WhenAll(a.ReadyAsync(), b.ReadyAsync());
        var root = X509Certificate2.CreateFromPem(KubernetesCaTests.Decode(_api.Get("v1", "Secret", SystemNs, "meshproxy-ca")!, "root-cert.pem"));
        Assert.Single(_api.Requests, r => r.StartsWith($"POST /api/v1/namespaces/{SystemNs}/secrets", StringComparison.Ordinal));
        var holder = _api.Get("coordination.k8s.io/v1", "Lease", SystemNs, "meshproxy-ca")!["spec"]!["holderIdentity"]!.GetValue<string>();
        Assert.True(holder.StartsWith("meshproxy-controlplane-a_", StringComparison.Ordinal) || holder.StartsWith("meshproxy-controlplane-b_", StringComparison.Ordinal), holder);
        foreach (var replica in new[] { a, b })
        {
            using var serving = await ServingCertificateAsync(replica.TlsPort);
            Assert.True(ChainsTo(serving, root), $"replica {replica.Name}'s serving certificate ({serving.Issuer}) does not chain to the Secret's root");
        }

        // One Service address for both, as kube-proxy makes it; the sidecars know only that address.
        using var service = await KubeProxyService.CreateAsync(15012, [a.TlsPort, b.TlsPort]);
        var caFile = await TrustBundleFileAsync();
        await StartSidecarAsync(apiPorts, "api-1", app.BoundPort(), service, caFile);
        await StartSidecarAsync(webPorts, "web-1", 18080, service, caFile);
        await EventuallyAsync(async () => await ReadyAsync(apiPorts) && await ReadyAsync(webPorts), "both sidecars ready", TimeSpan.FromSeconds(90), a, b);

        // Kill the replica that serves more of the sidecars' config streams (the random pick may have put both on one).
        var onA = await StreamsAsync(a);
        var onB = await StreamsAsync(b);
        Assert.Equal(2, onA.Count + onB.Count);
        var (victim, survivor, moved) = onA.Count >= onB.Count ? (a, b, onA) : (b, a, onB);

        await using var load = new LoadLoop();
        load.Add(webPorts);
        await EventuallyAsync(() => Task.FromResult(load.Ok >= 50), "load flowing", TimeSpan.FromSeconds(60));

        victim.Process.Signal(9);
        Assert.True(await victim.Process.ExitsWithinAsync(TimeSpan.FromSeconds(30)), "SIGKILL did not end the replica");
        var killedAt = load.Ok;
        // kube-proxy follows the EndpointSlice: the dead pod's endpoint leaves the Service (until then a connection to it is refused and retried).
        await service.SetEndpointsAsync([survivor.TlsPort]);

        // Every sidecar the victim served resyncs with the survivor: listed there, SYNCED, and not stale in its own view.
        await EventuallyAsync(
            async () => (await StreamsAsync(survivor)).Count(r => r.Status == "SYNCED") == 2 && await StaleAsync(apiPorts) == 0 && await StaleAsync(webPorts) == 0,
            $"{string.Join(", ", moved.Select(r => r.InstanceId))} synced with replica {survivor.Name}", TimeSpan.FromSeconds(60), survivor);

        // A certificate is still issued: a new sidecar's first CSR can only be answered by the survivor, under the same root.
        await StartSidecarAsync(web2Ports, "web-2", 18080, service, caFile);
        await EventuallyAsync(async () => await ReadyAsync(web2Ports), "the new sidecar ready (its certificate issued)", TimeSpan.FromSeconds(90), survivor);
        var certs = JsonDocument.Parse(await Http.GetStringAsync(new Uri($"http://127.0.0.1:{web2Ports.Admin}/certs"), Ct)).RootElement;
        Assert.Equal(CaTestKit.SpiffeId("shop", "web"), certs.GetProperty("spiffeId").GetString());
        Assert.Equal(root.Subject, certs.GetProperty("chain")[0].GetProperty("issuer").GetString());
        Assert.Contains(root.GetCertHashString(System.Security.Cryptography.HashAlgorithmName.SHA256).ToLowerInvariant(),
            certs.GetProperty("trustBundle").EnumerateArray().Select(c => c.GetProperty("sha256").GetString()));
        load.Add(web2Ports);
        await EventuallyAsync(() => Task.FromResult(load.OkThrough(web2Ports) >= 50), "load through the new sidecar too", TimeSpan.FromSeconds(60));
        await load.DisposeAsync();

        Assert.True(load.Failures.IsEmpty, $"{load.Failures.Count} failed requests, the first: {load.Failures.FirstOrDefault()}");
        Assert.True(load.Ok > killedAt + 50, $"{load.Ok} requests, {killedAt} before the kill");
        var survivorRows = await StreamsAsync(survivor);
        Assert.Equal(3, survivorRows.Count);
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"killed replica {victim.Name} (served {string.Join(", ", moved.Select(r => r.InstanceId))}); {load.Ok} requests, {killedAt} before the kill, 0 failed");
    }

    [Fact]
    public async Task Proxy_status_and_check_list_the_sidecars_of_every_replica()
    {
        // Two replicas, each sidecar pinned to one (its bootstrap names that replica's address): split for certain.
        var (a, b) = (StartReplica("a"), StartReplica("b"));
        await Task.WhenAll(a.ReadyAsync(), b.ReadyAsync());
        var caFile = await TrustBundleFileAsync();
        using var webPorts = new SidecarPorts("web");
        using var apiPorts = new SidecarPorts("api");
        Yaml.Write(_config, "api.yaml", ApiService(apiPorts.Inbound));
        await StartSidecarAsync(webPorts, "web-1", 18080, $"https://127.0.0.1:{a.TlsPort}", caFile);
        await StartSidecarAsync(apiPorts, "api-1", 18081, $"https://127.0.0.1:{b.TlsPort}", caFile);
        await EventuallyAsync(async () => (await StreamsAsync(a)).Any(r => r.InstanceId == "web-1.shop" && r.Status == "SYNCED")
            && (await StreamsAsync(b)).Any(r => r.InstanceId == "api-1.shop" && r.Status == "SYNCED"), "each replica serving its sidecar", TimeSpan.FromSeconds(90), a, b);
        Assert.DoesNotContain(await StreamsAsync(a), r => r.InstanceId == "api-1.shop");

        // The control plane's pods as the Deployment makes them; the API server's pod proxy reaches each monitoring port.
        foreach (var replica in new[] { a, b })
        {
            _api.Apply(ControlPlanePod(replica.Pod));
            _api.SetProxyTarget("pods", SystemNs, $"{replica.Pod}:{ControlPlaneReplicas.MonitoringPort}", replica.Monitoring);
        }

        // Another revision's replica and a pod that is not running: not asked.
        _api.Apply(ControlPlanePod("meshproxy-controlplane-canary-x", revision: "canary"));
        _api.Apply(ControlPlanePod("meshproxy-controlplane-pending", phase: "Pending"));

        using var client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = _api.BaseUri.ToString() });
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.True(await ProxyStatusCommand.RunAsync(client, Install, output, error, Ct) == 0, error.ToString());
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("CONTROL PLANE", lines[0], StringComparison.Ordinal);
        Assert.Equal(3, lines.Length);
        Assert.Contains(lines, l => l.StartsWith("web-1.shop", StringComparison.Ordinal) && l.Contains(a.Pod, StringComparison.Ordinal) && l.Contains("SYNCED", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("api-1.shop", StringComparison.Ordinal) && l.Contains(b.Pod, StringComparison.Ordinal) && l.Contains("SYNCED", StringComparison.Ordinal));
        Assert.DoesNotContain(_api.Requests, r => r.Contains("canary-x", StringComparison.Ordinal) || r.Contains("-pending", StringComparison.Ordinal));

        // The same by monitoring addresses, one per replica.
        output = new StringWriter();
        Assert.Equal(0, await ProxyStatusCommand.RunAsync([a.Monitoring, b.Monitoring], output, new StringWriter(), Ct));
        Assert.Equal(3, output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        // check's "every sidecar is synced" counts both replicas' sidecars.
        var check = await SidecarsSyncedCheckAsync(client);
        Assert.True(check.Ok, check.Detail);
        Assert.Equal("2 sidecars across 2 replicas", check.Detail);

        // One replica unreachable: proxy-status lists what it can and fails naming it; check fails saying its sidecars are unknown.
        _api.SetProxyTarget("pods", SystemNs, $"{b.Pod}:{ControlPlaneReplicas.MonitoringPort}", null);
        output = new StringWriter();
        error = new StringWriter();
        Assert.Equal(1, await ProxyStatusCommand.RunAsync(client, Install, output, error, Ct));
        Assert.Contains("web-1.shop", output.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("api-1.shop", output.ToString(), StringComparison.Ordinal);
        Assert.Contains($"cannot read /debug/syncz of {b.Pod} (HTTP 503)", error.ToString(), StringComparison.Ordinal);
        check = await SidecarsSyncedCheckAsync(client);
        Assert.False(check.Ok);
        Assert.Contains($"cannot read /debug/syncz of {b.Pod} (HTTP 503)", check.Detail, StringComparison.Ordinal);
    }

    private async Task<CheckResult> SidecarsSyncedCheckAsync(k8s.IKubernetes client)
    {
        var results = new List<CheckResult>();
        await new MeshChecks(client, Install, TimeProvider.System).RunAsync(preInstall: false, results.Add, Ct);
        return results.Single(r => r.Name == "every sidecar is synced");
    }

    private Replica StartReplica(string name)
    {
        var tls = new PortReservation();
        var pod = $"{Install.ControlPlane}-{name}";
        var process = ExternalProcess.Start(
            "dotnet",
            [Path.Combine(AppContext.BaseDirectory, "meshproxy-controlplane.dll"), "--source", "kubernetes", "--kubeconfig", _kubeconfig, "--config-dir", _config,
             "--grpc", "127.0.0.1:0", "--monitoring", "127.0.0.1:0", "--grpc-tls", $"127.0.0.1:{tls.Port}", "--ca-secret", "meshproxy-ca"],
            new Dictionary<string, string> { ["Logging__Console__FormatterName"] = "simple", ["POD_NAMESPACE"] = SystemNs, ["POD_NAME"] = pod });
        var replica = new Replica(name, pod, process, tls);
        _owned.Add(replica);
        return replica;
    }

    private Task StartSidecarAsync(SidecarPorts ports, string pod, int appPort, KubeProxyService service, string caFile) =>
        StartSidecarAsync(ports, pod, appPort, $"https://{service.HostPort}", caFile);

    /// <summary>A sidecar process in its pod (known to the API server, POD_NAME set, the pod's projected token beside its bootstrap).</summary>
    private async Task StartSidecarAsync(SidecarPorts ports, string pod, int appPort, string controlPlane, string caFile)
    {
        var account = ports.Workload;
        var dir = Path.Combine(_work, pod);
        Directory.CreateDirectory(dir);
        File.Copy(caFile, Path.Combine(dir, "root-cert.pem"));
        _api.Apply(KubeJson.Pod("shop", pod, "127.0.0.1", serviceAccount: account, app: account));
        await File.WriteAllTextAsync(Path.Combine(dir, $"{ports.Workload}.token"), _api.CreateServiceAccountToken("shop", account, pod: pod, lifetime: TimeSpan.FromHours(1)), Ct);
        var bootstrap = ports.WriteBootstrap(dir, appPort, controlPlane, caFile: "root-cert.pem");

        var command = RepoPaths.Sidecar("--config", bootstrap);
        var process = ExternalProcess.Start(command[0], command[1..], new Dictionary<string, string> { ["Logging__Console__FormatterName"] = "simple", ["POD_NAME"] = pod });
        _owned.Add(process);
        await process.WaitForLineAsync($"outbound listener on 127.0.0.1:{ports.Outbound}", TimeSpan.FromSeconds(60));
    }

    /// <summary>The trust bundle the control plane keeps in shop: what the kubelet mounts as the sidecar's caFile.</summary>
    private async Task<string> TrustBundleFileAsync()
    {
        string? pem = null;
        await EventuallyAsync(() => Task.FromResult((pem = _api.Get("v1", "ConfigMap", "shop", "meshproxy-ca-root-cert")?["data"]?["root-cert.pem"]?.GetValue<string>()) is not null), "the trust bundle in shop", TimeSpan.FromSeconds(60));
        var path = Path.Combine(_work, "root-cert.pem");
        await File.WriteAllTextAsync(path, pem, Ct);
        return path;
    }

    private static async Task<List<ControlPlaneSyncRow>> StreamsAsync(Replica replica) =>
        JsonSerializer.Deserialize<List<ControlPlaneSyncRow>>(await Http.GetStringAsync(new Uri(replica.Monitoring, "/debug/syncz"), Ct), WebJson)!;

    private static async Task<X509Certificate2> ServingCertificateAsync(int port)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port, Ct);
        await using var tls = new SslStream(tcp.GetStream(), false, (_, certificate, _, _) => certificate is not null); // judged by ChainsTo, against the Secret's root
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "meshproxy-controlplane", ApplicationProtocols = [SslApplicationProtocol.Http2] }, Ct);
        return new X509Certificate2(tls.RemoteCertificate!);
    }

    private static bool ChainsTo(X509Certificate2 leaf, X509Certificate2 root)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(leaf);
    }

    private static async Task<bool> ReadyAsync(SidecarPorts sidecar)
    {
        try
        {
            using var response = await Http.GetAsync(new Uri($"http://127.0.0.1:{sidecar.Stats}/ready"), Ct);
            return response.StatusCode == HttpStatusCode.OK;
        }
        catch (HttpRequestException)
        {
            return false;
        }
    }

    private static async Task<double> StaleAsync(SidecarPorts sidecar)
    {
        var metrics = await Http.GetStringAsync(new Uri($"http://127.0.0.1:{sidecar.Stats}/metrics"), Ct);
        var line = metrics.Split('\n').Single(l => l.StartsWith("meshproxy_config_stale ", StringComparison.Ordinal));
        return double.Parse(line["meshproxy_config_stale ".Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static string ApiService(int inboundPort) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: api, namespace: shop }
        spec:
          ports: [{ port: 80, protocol: HTTP }]
          endpoints: [{ address: 127.0.0.1, port: {{inboundPort}}, serviceAccount: api }]

        """;

    private static string ControlPlanePod(string name, string revision = InstallOptions.DefaultRevision, string phase = "Running") => $$$"""
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"{{{name}}}","namespace":"{{{SystemNs}}}","labels":{"app":"{{{Install.ControlPlane}}}","{{{InstallOptions.RevisionLabel}}}":"{{{revision}}}"}},
         "spec":{"serviceAccountName":"meshproxy-controlplane","containers":[{"name":"controlplane","image":"meshproxy-controlplane:dev"}]},
         "status":{"phase":"{{{phase}}}","podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}
        """;

    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what, TimeSpan timeout, params Replica[] replicas)
    {
        var deadline = Stopwatch.StartNew();
        Exception? last = null;
        while (deadline.Elapsed < timeout)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException or InvalidOperationException)
            {
                last = ex;
            }

            await Task.Delay(100, Ct);
        }

        Assert.Fail($"never happened within {timeout.TotalSeconds:0} s: {what}{(last is null ? string.Empty : $" (last error: {last.Message})")}"
            + string.Concat(replicas.Select(r => $"\n--- replica {r.Name}:\n{string.Join('\n', r.Process.Output.Split('\n').TakeLast(30))}")));
    }

    /// <summary>The fields of a replica's /debug/syncz row this test reads.</summary>
    private sealed record ControlPlaneSyncRow(string InstanceId, string? Status);

    /// <summary>One control-plane process; its TLS port reserved before it starts, so the Service can name it.</summary>
    private sealed class Replica(string name, string pod, ExternalProcess process, PortReservation tls) : IAsyncDisposable
    {
        public string Name => name;

        public string Pod => pod;

        public ExternalProcess Process => process;

        public int TlsPort => tls.Port;

        public Uri Monitoring { get; private set; } = null!;

        public async Task ReadyAsync()
        {
            var listening = await process.WaitForLineAsync("Control plane listening", TimeSpan.FromSeconds(90));
            var monitoring = listening[(listening.IndexOf("monitoring on ", StringComparison.Ordinal) + "monitoring on ".Length)..].Split(',')[0].Trim();
            Monitoring = new Uri($"http://{monitoring}");
        }

        public async ValueTask DisposeAsync()
        {
            await process.DisposeAsync();
            tls.Dispose();
        }
    }

    /// <summary>Two loops per sidecar, each one GET through the sidecar's outbound listener to api at a time; every answer that is not 200 is a failure.</summary>
    private sealed class LoadLoop : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly List<Task> _loops = [];
        private readonly System.Collections.Concurrent.ConcurrentDictionary<int, long> _okBy = new();
        private long _ok;

        public System.Collections.Concurrent.ConcurrentQueue<string> Failures { get; } = new();

        public long Ok => Interlocked.Read(ref _ok);

        public long OkThrough(SidecarPorts sidecar) => _okBy.GetValueOrDefault(sidecar.Outbound);

        public void Add(SidecarPorts sidecar)
        {
            for (var i = 0; i < 2; i++)
            {
                _loops.Add(Task.Run(() => RunAsync(sidecar.Outbound)));
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_stop.IsCancellationRequested)
            {
                await _stop.CancelAsync();
                await Task.WhenAll(_loops);
            }
        }

        private async Task RunAsync(int outbound)
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, new Uri($"http://127.0.0.1:{outbound}/hello"));
                    request.Headers.Host = "api.shop";
                    using var response = await http.SendAsync(request, _stop.Token);
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        Interlocked.Increment(ref _ok);
                        _okBy.AddOrUpdate(outbound, 1, (_, n) => n + 1);
                    }
                    else
                    {
                        Failures.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} via :{outbound}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(_stop.Token)}");
                    }
                }
                catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                {
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
                {
                    Failures.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} via :{outbound}: {ex.Message}");
                }
            }
        }
    }
}
