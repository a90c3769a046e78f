using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using MeshProxy.Config.Schema;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Injection;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.Pods;

/// <summary>
/// TEST INFRASTRUCTURE: a one-node "cluster" of real pods. A Linux bridge on this host (the node's pod network,
/// 10.244.N.0/24, N random per cluster) joins network namespaces, one per pod, each with its own pod IP on a veth and
/// a default route via the bridge. Each pod runs an unmodified app (peers/echo.py: answers with its pod's name) and the
/// real sidecar process as uid 1337, its traffic captured by meshproxy-init with the arguments the injector writes
/// into a pod. The fake API server holds the Pods (IP, labels, service account) and the EndpointSlices the test writes
/// as the Deployment and EndpointSlice controllers would; the control plane runs in process in Kubernetes mode against
/// it: the CA's root in a Secret, TokenReview of each pod's projected token, the config stream and the CA on TLS (15012)
/// bound to the bridge's address, the trust bundle read from the ConfigMap in the pods' namespace (as the kubelet
/// mounts it). Cluster DNS is each pod's /etc/hosts (service names to cluster IPs). Everything (processes, namespaces
/// with their iptables rules, the bridge, /etc/netns files) is removed on dispose, also when a start fails.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed class PodCluster : IAsyncDisposable
{
    public const string Ns = "shop";
    public const int AppPort = 8080;

    private readonly string _id = Guid.NewGuid().ToString("N")[..6];
    private readonly List<Pod> _pods = [];
    private readonly List<(string Ip, string Names)> _hosts = [];
    private readonly List<string> _links = [];
    private readonly k8s.Kubernetes _client;
    private readonly string _work;
    private readonly Lock _lock = new();
    private int _lastAddress = 1;
    private bool _bridgeCreated;
    private TimeSpan? _sidecarCertificateTtl;

    private PodCluster(FakeKubernetesApiServer api, int subnet)
    {
        Api = api;
        Subnet = subnet;
        _client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = api.BaseUri.ToString() });
        _work = Path.Combine("/tmp", "meshproxy-pods-" + _id);
        Directory.CreateDirectory(_work);
        File.SetUnixFileMode(_work, (UnixFileMode)0b111_101_101); // the sidecars (uid 1337) read their pod's files below it
    }

    public FakeKubernetesApiServer Api { get; }

    public CaTestKit ControlPlane { get; private set; } = null!;

    public LogCapture Logs { get; } = new();

    private int Subnet { get; }

    private string Bridge => "mpbr" + _id;

    private string Gateway => $"10.244.{Subnet}.1";

    /// <param name="ca">Changes to the Kubernetes CA's options (its schedule's clock, how long a view lasts).</param>
    /// <param name="certificateTtl">The lifetime every sidecar asks for (MESHPROXY_CERTIFICATE_TTL); then MeshConfig's
    /// lifetimes are the shortest it allows (10m) and not-before is not backdated. Null: MeshConfig's 24h.</param>
    public static async Task<PodCluster> StartAsync(Func<KubernetesCaOptions, KubernetesCaOptions>? ca = null, TimeSpan? certificateTtl = null)
    {
        var api = await FakeKubernetesApiServer.StartAsync();
        var cluster = new PodCluster(api, await FreeSubnetAsync()) { _sidecarCertificateTtl = certificateTtl };
        try
        {
            api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"meshproxy-injection":"enabled"}}}""");
            api.Apply(KubeJson.Namespace(KubernetesCaTests.Ns));
            foreach (var kind in ResourceSchemas.All)
            {
                api.RegisterResource(ResourceSchemas.Group, ResourceSchemas.Version, kind.Plural, kind.Kind, namespaced: true);
            }

            api.RegisterResource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", namespaced: true);
            api.RegisterResource("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute", namespaced: true);

            await Sh("ip", "link", "add", cluster.Bridge, "type", "bridge");
            cluster._bridgeCreated = true;
            await Sh("ip", "addr", "add", cluster.Gateway + "/24", "dev", cluster.Bridge);
            await Sh("ip", "link", "set", cluster.Bridge, "up");

            // Kubernetes mode as installed: CA root in a Secret under its Lease, TokenReview, config and CA over TLS only
            // where the pods can reach it (the plaintext port stays on loopback, for nobody).
            cluster.ControlPlane = await CaTestKit.StartAsync(
                o => o with
                {
                    CaDirectory = null,
                    TokenStoreFile = string.Empty,
                    KubernetesCa = (ca ?? (c => c))(new KubernetesCaOptions { Namespace = KubernetesCaTests.Ns, Identity = "controlplane-0" }),
                    TlsEndPoint = new IPEndPoint(IPAddress.Parse(cluster.Gateway), 0),
                    ClockSkewAllowance = certificateTtl is null ? o.ClockSkewAllowance : TimeSpan.Zero,
                },
                ttl: certificateTtl is null ? "24h" : "10m",
                maxTtl: certificateTtl is null ? "48h" : "10m",
                host: o => o with { Kubernetes = new KubernetesSourceOptions(), KubernetesClient = cluster._client },
                logs: cluster.Logs);
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(cluster.TrustBundle is not null), "the trust bundle ConfigMap in shop", TimeSpan.FromSeconds(30));
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>The trust bundle as the kubelet would mount it into a pod of shop.</summary>
    public string? TrustBundle => Api.Get("v1", "ConfigMap", Ns, "meshproxy-ca-root-cert")?["data"]?["root-cert.pem"]?.GetValue<string>();

    public string ControlPlaneAddress => $"https://{Gateway}:{ControlPlane.ControlPlane.Host.GrpcTlsEndPoint!.Port}";

    /// <summary>
    /// A Service with a cluster IP in the API (selector app=<paramref name="name"/>, port 80 to the pods' 8080, named
    /// http), and its names in every pod's /etc/hosts from now on (existing pods get theirs rewritten).
    /// </summary>
    public void Service(string name, string clusterIp)
    {
        Api.Apply(KubeJson.Service(Ns, name, clusterIp: clusterIp));
        _hosts.Add((clusterIp, $"{name}.{Ns}.svc.cluster.local {name}.{Ns} {name}"));
        lock (_lock)
        {
            foreach (var pod in _pods)
            {
                pod.Namespace.SetHosts(Hosts());
            }
        }
    }

    /// <summary>The Service's EndpointSlice as the EndpointSlice controller writes it: each pod with its conditions.</summary>
    public void Slice(string service, params (Pod Pod, bool Ready, bool Serving, bool Terminating)[] endpoints) =>
        Api.Apply(KubeJson.EndpointSlice(Ns, service + "-x1", service, AppPort, [.. endpoints.Select(e => (e.Pod.Ip, e.Pod.Name, e.Ready, e.Serving, e.Terminating))]));

    /// <summary>The Service's EndpointSlice with every given pod ready.</summary>
    public void Slice(string service, params Pod[] ready) => Slice(service, [.. ready.Select(p => (p, true, true, false))]);

    /// <summary>
    /// Schedules a pod: its network namespace and address, the Pod in the API, its projected token, capture, app and
    /// sidecar; returns once the sidecar is ready (config and SVID) and the app answers. Several may start at once.
    /// </summary>
    /// <param name="token">The token file's content in place of the pod's own projected token (an impostor's).</param>
    /// <param name="waitReady">False: return once the processes are started (a pod that is expected never to become ready).</param>
    public async Task<Pod> StartPodAsync(string name, string serviceAccount, string app, string? token = null, bool waitReady = true)
    {
        var address = Interlocked.Increment(ref _lastAddress);
        var ip = $"10.244.{Subnet}.{address}";
        var pod = new Pod(this, name, serviceAccount, ip, await NetworkNamespace.CreateAsync());
        lock (_lock)
        {
            _pods.Add(pod);
        }

        var hostEnd = $"mph{_id}{address:x2}";
        var podEnd = $"mpp{_id}{address:x2}";
        await Sh("ip", "link", "add", hostEnd, "type", "veth", "peer", "name", podEnd);
        lock (_lock)
        {
            _links.Add(hostEnd);
        }

        await Sh("ip", "link", "set", podEnd, "netns", pod.Namespace.Name); // deleted with the namespace, and its peer with it
        await Sh("ip", "link", "set", hostEnd, "master", Bridge);
        await Sh("ip", "link", "set", hostEnd, "up");
        await pod.Namespace.ExecAsync("ip", "addr", "add", ip + "/24", "dev", podEnd);
        await pod.Namespace.ExecAsync("ip", "link", "set", podEnd, "up");
        await pod.Namespace.ExecAsync("ip", "route", "add", "default", "via", Gateway);
        pod.Namespace.SetHosts(Hosts());

        Api.Apply(KubeJson.Pod(Ns, name, ip, serviceAccount: serviceAccount, app: app));
        var dir = Path.Combine(_work, name);
        Directory.CreateDirectory(dir);
        // The kubelet's projected volumes: the pod's own token (audience meshproxy) and the trust bundle's ConfigMap.
        await File.WriteAllTextAsync(Path.Combine(dir, "token"), token ?? Api.CreateServiceAccountToken(Ns, serviceAccount, pod: name));
        await File.WriteAllTextAsync(Path.Combine(dir, "root-cert.pem"), TrustBundle);
        await File.WriteAllTextAsync(Path.Combine(dir, "sidecar.yaml"), $$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: {{app}}, namespace: {{Ns}} }
            spec:
              workload: { serviceAccount: {{serviceAccount}} }
              app: { port: {{AppPort}}, protocol: HTTP }
              drainDuration: 2s
              controlPlane: { address: "{{ControlPlaneAddress}}", tokenFile: token, caFile: root-cert.pem, snapshotPath: snapshot.json }

            """);
        await Sh("chown", "-R", "1337:1337", dir);

        // The capture the webhook decides for a pod with one container port, applied by meshproxy-init.
        var spec = JsonNode.Parse($$$"""{"metadata":{"name":"{{{name}}}"},"spec":{"containers":[{"name":"app","ports":[{"containerPort":{{{AppPort}}}}]}]}}""")!.AsObject();
        var injected = new SidecarInjector(new InjectorOptions()).Inject(spec, new InjectionTarget(Ns));
        var args = injected.Pod["spec"]!["initContainers"]![0]!["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToArray();
        await pod.Namespace.ExecAsync(["dotnet", RepoPaths.Bin("meshproxy-init"), .. args]);

        pod.App = pod.Namespace.Start("python3", RepoPaths.Peer("echo.py"), name, AppPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
        pod.Sidecar = pod.Namespace.Start("setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups",
            "env", "HOME=/tmp", "DOTNET_CLI_TELEMETRY_OPTOUT=1", "Logging__Console__FormatterName=simple", $"POD_NAME={name}",
            "MESHPROXY_CERTIFICATE_TTL=" + (_sidecarCertificateTtl is { } ttl ? ((int)ttl.TotalSeconds).ToString(System.Globalization.CultureInfo.InvariantCulture) + "s" : string.Empty),
            "dotnet", RepoPaths.Bin("meshproxy-sidecar"), "--config", Path.Combine(dir, "sidecar.yaml"));
        if (waitReady)
        {
            await pod.WaitReadyAsync();
        }

        return pod;
    }

    /// <summary>
    /// The kubelet's sync of ConfigMap volumes: every pod's mounted trust bundle (its caFile) is replaced, atomically, by
    /// the ConfigMap's current content where it differs. The kubelet does it within a minute; a test calls it as often as
    /// its schedule needs.
    /// </summary>
    public async Task SyncTrustBundleFilesAsync()
    {
        if (TrustBundle is not { } pem)
        {
            return;
        }

        List<Pod> pods;
        lock (_lock)
        {
            pods = [.. _pods];
        }

        foreach (var pod in pods)
        {
            var file = Path.Combine(_work, pod.Name, "root-cert.pem");
            if (File.Exists(file) && await File.ReadAllTextAsync(file) != pem)
            {
                await File.WriteAllTextAsync(file + ".new", pem);
                File.Move(file + ".new", file, overwrite: true);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var pod in _pods)
        {
            await pod.DisposeAsync();
        }

        if (ControlPlane is not null)
        {
            await ControlPlane.DisposeAsync();
        }

        // A deleted namespace's veth pair goes when the kernel has released the namespace, which lingering sockets can
        // delay: the host end is deleted here, which takes the pair at once.
        foreach (var link in _links)
        {
            await Run.ProcessAsync("ip", ["link", "del", link]);
        }

        if (_bridgeCreated)
        {
            await Sh("ip", "link", "del", Bridge);
        }

        _client.Dispose();
        await Api.DisposeAsync();
        Directory.Delete(_work, recursive: true);
    }

    private string Hosts() => "127.0.0.1 localhost\n" + string.Concat(_hosts.Select(h => $"{h.Ip} {h.Names}\n"));

    /// <summary>A 10.244.N.0/24 no interface of this host uses yet (several clusters may run at once).</summary>
    private static async Task<int> FreeSubnetAsync()
    {
        var routes = await Sh("ip", "-4", "route", "show");
        var candidates = Enumerable.Range(1, 250).Where(n => !routes.Contains($"10.244.{n}.", StringComparison.Ordinal)).ToArray();
        return candidates[Random.Shared.Next(candidates.Length)];
    }

    internal static Task<string> Sh(params string[] command) => NetworkNamespace.RunAsync(command);

    /// <summary>One pod: its namespace, address, app and sidecar.</summary>
    internal sealed class Pod(PodCluster cluster, string name, string serviceAccount, string ip, NetworkNamespace ns) : IAsyncDisposable
    {
        public string Name => name;

        public string ServiceAccount => serviceAccount;

        public string Ip => ip;

        public NetworkNamespace Namespace => ns;

        public ExternalProcess App { get; set; } = null!;

        public ExternalProcess Sidecar { get; set; } = null!;

        /// <summary>The sidecar's admin /config_dump (admin listens on the pod's loopback).</summary>
        public async Task<JsonElement> ConfigDumpAsync() =>
            JsonDocument.Parse(await ns.ExecAsync("curl", "-s", "--fail-with-body", "--max-time", "10", "http://127.0.0.1:15000/config_dump")).RootElement.Clone();

        /// <summary>The sidecar's certificates as its admin /certs shows them.</summary>
        public async Task<JsonElement> CertsAsync() =>
            JsonDocument.Parse(await ns.ExecAsync("curl", "-s", "--fail-with-body", "--max-time", "10", "http://127.0.0.1:15000/certs")).RootElement.Clone();

        /// <summary>The addresses of the endpoints this sidecar would send new requests to for <paramref name="service"/>'s port 80.</summary>
        public async Task<string[]> EndpointsOfAsync(string service)
        {
            var host = (await ConfigDumpAsync()).GetProperty("virtualHosts").EnumerateArray()
                .FirstOrDefault(v => v.GetProperty("service").GetString() == $"{service}.{Ns}.svc.cluster.local");
            return host.ValueKind == JsonValueKind.Undefined ? [] : [.. host.GetProperty("endpoints").EnumerateArray().Select(e => e.GetProperty("address").GetString()!).Order()];
        }

        /// <summary>Polls the sidecar's applied config until its endpoints for the service are exactly those pods'.</summary>
        public Task WaitForEndpointsAsync(string service, params Pod[] pods)
        {
            var expected = pods.Select(p => p.Ip).Order().ToArray();
            return TestControlPlane.EventuallyAsync(async () => (await EndpointsOfAsync(service)).SequenceEqual(expected),
                $"{name}'s sidecar sends {service} to [{string.Join(' ', pods.Select(p => p.Name))}]", TimeSpan.FromSeconds(30));
        }

        /// <summary>One GET from the pod's app side (captured like any app's call); the answer's status and body.</summary>
        public async Task<(int Status, string Body)> CurlAsync(string url)
        {
            var result = await Run.ProcessAsync("ip", ["netns", "exec", ns.Name, "curl", "-s", "--max-time", "10", "-w", "\n%{http_code}", url]);
            var split = result.Stdout.LastIndexOf('\n');
            return split < 0 ? (0, result.Stdout + result.Stderr) : (int.Parse(result.Stdout[(split + 1)..], System.Globalization.CultureInfo.InvariantCulture), result.Stdout[..split]);
        }

        /// <summary>Starts peers/load.py in this pod against <paramref name="url"/>.</summary>
        public LoadLoop StartLoad(string url) => new(ns.Start("python3", RepoPaths.Peer("load.py"), url));

        /// <summary>
        /// What the kubelet does to a deleted pod: SIGTERM to the sidecar, which drains (in-flight requests finish, callers
        /// told to go) and exits; then the app goes too.
        /// </summary>
        public async Task TerminateAsync()
        {
            Sidecar.Signal(15);
            Assert.True(await Sidecar.ExitsWithinAsync(TimeSpan.FromSeconds(30)), $"{name}'s sidecar did not exit after SIGTERM: {Sidecar.Output}");
            App.Signal(9);
        }

        public async Task WaitReadyAsync()
        {
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (true)
            {
                var ready = await Run.ProcessAsync("ip", ["netns", "exec", ns.Name, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "http://127.0.0.1:15020/ready"]);
                var appUp = await Run.ProcessAsync("ip", ["netns", "exec", ns.Name, "curl", "-s", "-o", "/dev/null", "--max-time", "2", $"http://127.0.0.1:{AppPort}/"]);
                if (ready.Stdout == "200" && appUp.Exit == 0)
                {
                    return;
                }

                if (DateTime.UtcNow > deadline || Sidecar.HasExited || App.HasExited)
                {
                    throw new TimeoutException($"pod {name}: sidecar or app not ready (sidecar: {Sidecar.Output}; app: {App.Output}; control plane: {string.Join('\n', cluster.Logs.Lines.TakeLast(20))})");
                }

                await Task.Delay(200);
            }
        }

        public ValueTask DisposeAsync() => ns.DisposeAsync();
    }
}
