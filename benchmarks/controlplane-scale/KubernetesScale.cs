using System.Diagnostics;
using System.Globalization;
using System.Net;
using MeshProxy.Api.V1;
using MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// The Kubernetes source at cluster scale (issue 17, item 5): the control plane runs as its own process with
/// <c>--source kubernetes</c> against the tests' fake Kubernetes API server (test infrastructure: there is no
/// API server on these machines; it serves real Kubernetes JSON with list/watch semantics), in this process.
/// <list type="bullet">
/// <item>1000 Services over 10 namespaces, 10,090 endpoints, 2000 pods: 190 Deployments of 10 pods, each backing
/// five or six Services, and one Deployment "hot" of 100 pods behind the Service "hot".</item>
/// <item>Every pod is a sidecar: one simulated sidecar per pod, each on its own HTTP/2 connection from its pod's
/// IP (127.1.x.y: the source checks that a sidecar connects from its pod's address), with its pod's projected
/// service-account token (reviewed through TokenReview, as the config stream requires in Kubernetes mode).</item>
/// <item>Scoped (the default): each Deployment's Sidecar resource lets it reach five Services, and one Deployment
/// in ten also "hot", as Istio's Sidecar egress scoping does; so a change to "hot" concerns 190 sidecars.
/// Unscoped: no Sidecar resources, every sidecar reaches every Service (every change concerns all 2000).</item>
/// <item>The change: a rolling update of "hot" (maxSurge 25, maxUnavailable 0), as the Deployment and
/// EndpointSlice controllers write it: per step, 25 new pods start (and their sidecars connect), their endpoints
/// become ready, 25 old endpoints turn terminating, the old pods go away. Each EndpointSlice write is timed
/// until every sidecar that can reach "hot" has ACKed a snapshot showing it.</item>
/// </list>
/// Reported: change -> ACK p50/p99 over every (change, sidecar), pushes and bytes per change, whether any sidecar
/// that cannot reach "hot" got a push, control-plane RSS and CPU.
/// </summary>
internal static class KubernetesScale
{
    private const int Namespaces = 10;
    private const int AppDeployments = 190;
    private const int PodsPerApp = 10;
    private const int AppServices = 999;
    private const int HotPods = 100;
    private const int Surge = 25;
    private const string HotNamespace = "bench-0";

    private static int _nextIp;

    public static async Task<int> RunAsync(string[] args)
    {
        var scoped = args.Length == 0 || args[0] != "unscoped";
        await using var api = await FakeKubernetesApiServer.StartAsync();
        var work = Path.Combine(Path.GetTempPath(), "meshproxy-k8s-scale", Guid.NewGuid().ToString("N"));
        var config = Path.Combine(work, "config");
        Directory.CreateDirectory(config);

        // The cluster: namespaces, pods with their ReplicaSet owners, Services, one EndpointSlice per Service.
        var populate = Stopwatch.StartNew();
        for (var n = 0; n < Namespaces; n++)
        {
            api.Apply($$$"""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bench-{{{n}}}"}}""");
        }

        var apps = new List<Deployment>();
        for (var d = 0; d < AppDeployments; d++)
        {
            var app = new Deployment($"app-{d:D3}", $"bench-{d % Namespaces}", "5d8f7c9b6");
            for (var p = 0; p < PodsPerApp; p++)
            {
                app.Pods.Add(NewPod(api, app));
            }

            apps.Add(app);
        }

        var hot = new Deployment("hot", HotNamespace, "7b6c5d4f3");
        for (var p = 0; p < HotPods; p++)
        {
            hot.Pods.Add(NewPod(api, hot));
        }

        var services = new List<(string Name, Deployment Backend)>();
        for (var i = 0; i < AppServices; i++)
        {
            services.Add(($"svc-{i:D3}", apps[i % AppDeployments]));
        }

        var serviceIndex = 0;
        foreach (var (name, backend) in services)
        {
            ApplyService(api, backend.Namespace, name, backend.Name, serviceIndex++);
            ApplySlices(api, backend.Namespace, name, backend.Pods.Select(p => (p, Ready: true, Terminating: false)));
        }

        ApplyService(api, HotNamespace, "hot", "hot", serviceIndex);
        ApplySlices(api, HotNamespace, "hot", hot.Pods.Select(p => (p, Ready: true, Terminating: false)));
        var endpoints = services.Sum(s => s.Backend.Pods.Count) + hot.Pods.Count;

        // Who reaches "hot": one app Deployment in ten (scoped), or everyone (unscoped).
        var reachesHot = new HashSet<string>(StringComparer.Ordinal) { };
        if (scoped)
        {
            for (var d = 0; d < AppDeployments; d++)
            {
                var app = apps[d];
                var egress = Enumerable.Range(0, 5).Select(k => services[(d * 5 + k) % AppServices]).Select(s => $"\"{s.Backend.Namespace}/{s.Name}\"").ToList();
                if (d % 10 == 0)
                {
                    egress.Add($"\"{HotNamespace}/hot\"");
                    reachesHot.Add(app.Name);
                }

                WriteSidecar(config, app, egress);
            }

            WriteSidecar(config, hot, [$"\"{services[0].Backend.Namespace}/{services[0].Name}\""]);
        }
        else
        {
            reachesHot.UnionWith(apps.Select(a => a.Name).Append(hot.Name));
        }

        Console.WriteLine($"cluster: {services.Count + 1} Services, {endpoints} endpoints, {apps.Sum(a => a.Pods.Count) + hot.Pods.Count} pods in {Namespaces} namespaces; " +
                          $"{(scoped ? $"scoped: {reachesHot.Count} of {AppDeployments + 1} Deployments reach \"hot\"" : "unscoped: every sidecar reaches every Service")} " +
                          $"(written in {populate.Elapsed.TotalSeconds:F1} s)");

        var kubeconfig = Path.Combine(work, "kubeconfig");
        File.WriteAllText(kubeconfig, $$"""
            apiVersion: v1
            kind: Config
            clusters: [{ name: fake, cluster: { server: "{{api.BaseUri.ToString().TrimEnd('/')}}" } }]
            users: [{ name: controlplane, user: { token: control-plane-token } }]
            contexts: [{ name: fake, context: { cluster: fake, user: controlplane } }]
            current-context: fake
            """);
        var grpcPort = Measure.FreePort();
        var monitoringPort = Measure.FreePort();
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[]
                 {
                     Path.Combine(AppContext.BaseDirectory, "meshproxy-controlplane.dll"), "--source", "kubernetes", "--kubeconfig", kubeconfig,
                     "--config-dir", config, "--grpc", $"127.0.0.1:{grpcPort}", "--monitoring", $"127.0.0.1:{monitoringPort}",
                 })
        {
            info.ArgumentList.Add(a);
        }

        info.Environment["Logging__LogLevel__Default"] = "Warning";
        // The source's "configuration generation N ... built in X ms" lines: what each rebuild cost.
        info.Environment["Logging__LogLevel__MeshProxy.ControlPlane.Kubernetes.KubernetesSource"] = "Information";
        info.Environment["Logging__Console__FormatterName"] = "simple";
        var builds = new System.Collections.Concurrent.ConcurrentQueue<double>();
        using var cp = Process.Start(info)!;
        cp.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { } line && line.IndexOf("; built in ", StringComparison.Ordinal) is var at and >= 0)
            {
                builds.Enqueue(double.Parse(line[(at + "; built in ".Length)..].Split(' ')[0], CultureInfo.InvariantCulture));
            }
        };
        cp.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"[cp] {e.Data}"); };
        cp.BeginOutputReadLine();
        cp.BeginErrorReadLine();
        var sidecars = new Dictionary<Pod, SimulatedSidecar>();
        try
        {
            using var http = new HttpClient();
            var started = Stopwatch.StartNew();
            await Measure.WaitAsync(async () => (await http.GetAsync($"http://127.0.0.1:{monitoringPort}/ready")).IsSuccessStatusCode);
            Console.WriteLine($"control plane (pid {cp.Id}) ready (informers synced, first state built in {(builds.TryPeek(out var first) ? first : 0):F0} ms) {started.Elapsed.TotalSeconds:F1} s after start; RSS {Measure.Rss(cp.Id) / 1048576.0:F1} MiB, CPU {Measure.CpuTime(cp.Id).TotalSeconds:F1} s");

            var address = new Uri($"http://127.0.0.1:{grpcPort}");
            var connect = Stopwatch.StartNew();
            var cpuBefore = Measure.CpuTime(cp.Id);
            var all = apps.Append(hot).SelectMany(d => d.Pods).ToList();
            for (var i = 0; i < all.Count; i++)
            {
                sidecars[all[i]] = Connect(api, address, all[i]);
                if (i % 100 == 99)
                {
                    await Task.Delay(20); // the accept queue is 512: no storm of 2000 connections at once
                }
            }

            await Task.WhenAll(sidecars.Values.Select(s => s.FirstAcked)).WaitAsync(TimeSpan.FromMinutes(5));
            var firstBytes = sidecars.Values.Sum(s => s.Bytes);
            Console.WriteLine($"{sidecars.Count} sidecars connected and ACKed their first snapshot in {connect.Elapsed.TotalSeconds:F1} s " +
                              $"(control plane CPU {(Measure.CpuTime(cp.Id) - cpuBefore).TotalSeconds:F1} s; first snapshots {firstBytes / 1024.0 / sidecars.Count:F1} KiB per sidecar on average)");
            await Task.Delay(2000);
            var rssConnected = Measure.Rss(cp.Id);
            Console.WriteLine($"control plane RSS with {sidecars.Count} streams: {rssConnected / 1048576.0:F1} MiB");

            // The rolling update, one EndpointSlice write at a time, each timed until every sidecar reaching "hot" applied it.
            var latencies = new List<double>();
            var changes = new List<string>();
            var cpuRollout = Measure.CpuTime(cp.Id);
            var buildsBefore = builds.Count;
            var rollout = Stopwatch.StartNew();
            var newHot = new Deployment(hot.Name, hot.Namespace, "6a5b4c3d2");
            var old = hot.Pods.ToList();
            for (var step = 0; step < HotPods / Surge; step++)
            {
                // 25 new pods start; their sidecars connect and get their config (not timed here: a new pod is not a change to others).
                var fresh = Enumerable.Range(0, Surge).Select(_ => NewPod(api, newHot)).ToList();
                newHot.Pods.AddRange(fresh);
                foreach (var pod in fresh)
                {
                    sidecars[pod] = Connect(api, address, pod);
                }

                await Task.WhenAll(fresh.Select(p => sidecars[p].FirstAcked)).WaitAsync(TimeSpan.FromMinutes(2));

                // Their endpoints become ready.
                var last = fresh[^1].Quoted;
                await TimedChangeAsync($"step {step + 1}: 25 new endpoints ready",
                    () => ApplySlices(api, HotNamespace, "hot", old.Select(p => (p, true, false)).Concat(newHot.Pods.Select(p => (p, true, false)))),
                    yaml => yaml.Contains(last, StringComparison.Ordinal));

                // 25 old pods are told to stop: their endpoints turn terminating (and leave the set while others are ready).
                var stopping = old.Take(Surge).ToList();
                var gone = stopping[^1].Quoted;
                await TimedChangeAsync($"step {step + 1}: 25 old endpoints terminating",
                    () => ApplySlices(api, HotNamespace, "hot", old.Select(p => (p, !stopping.Contains(p), stopping.Contains(p))).Concat(newHot.Pods.Select(p => (p, true, false)))),
                    yaml => !yaml.Contains(gone, StringComparison.Ordinal));

                // They exit: sidecars gone, pods deleted, endpoints removed. "hot" as served does not change: no push is due.
                old.RemoveAll(stopping.Contains);
                foreach (var pod in stopping)
                {
                    await sidecars[pod].DisposeAsync();
                    sidecars.Remove(pod);
                }

                var pushesBefore = sidecars.Values.Sum(s => s.Pushes);
                foreach (var pod in stopping)
                {
                    api.Delete("v1", "Pod", pod.Namespace, pod.Name);
                }

                ApplySlices(api, HotNamespace, "hot", old.Select(p => (p, true, false)).Concat(newHot.Pods.Select(p => (p, true, false))));
                await Task.Delay(1000); // ten debounce periods for a push that should not come
                changes.Add($"  step {step + 1}: 25 new sidecars got their first config after {fresh.Sum(p => sidecars[p].Retries)} UNAVAILABLE answers (pod not yet seen), retried");
                changes.Add($"  step {step + 1}: 25 old pods deleted, endpoints removed (no change to what is served): {sidecars.Values.Sum(s => s.Pushes) - pushesBefore} pushes");
            }

            var cpuUsed = Measure.CpuTime(cp.Id) - cpuRollout;
            var rebuilds = builds.ToArray()[buildsBefore..];
            latencies.Sort();
            double P(double q) => latencies[Math.Min(latencies.Count - 1, (int)Math.Ceiling(q * latencies.Count) - 1)];
            Console.WriteLine($"rolling update of \"hot\" ({HotPods} pods, {HotPods / Surge} steps of {Surge}) in {rollout.Elapsed.TotalSeconds:F1} s:");
            foreach (var line in changes)
            {
                Console.WriteLine(line);
            }

            Console.WriteLine($"change -> ACK over {latencies.Count} (change, sidecar) pairs: p50 {P(0.50):F0} ms, p99 {P(0.99):F0} ms, max {latencies[^1]:F0} ms (includes the 100 ms debounce)");
            Console.WriteLine($"control plane: CPU {cpuUsed.TotalSeconds:F2} s during the rollout; RSS {Measure.Rss(cp.Id) / 1048576.0:F1} MiB after it; " +
                              $"{rebuilds.Length} rebuilds of the whole state, {(rebuilds.Length == 0 ? 0 : rebuilds.Average()):F0} ms each on average (max {(rebuilds.Length == 0 ? 0 : rebuilds.Max()):F0} ms)");
            return 0;

            async Task TimedChangeAsync(string what, Action change, Func<string, bool> shows)
            {
                var pushes = sidecars.ToDictionary(s => s.Key, s => (s.Value.Pushes, s.Value.Bytes));
                var at = Stopwatch.GetTimestamp();
                var waits = sidecars.Where(s => reachesHot.Contains(s.Key.Deployment)).Select(s => s.Value.Arm(at, snapshot => Hot(snapshot) is { } yaml && shows(yaml))).ToList();
                change();
                var taken = await Task.WhenAll(waits).WaitAsync(TimeSpan.FromMinutes(2));
                latencies.AddRange(taken.Select(t => t.TotalMilliseconds));
                await Task.Delay(500); // late pushes to sidecars that should get none would show here
                var pushed = sidecars.Where(s => s.Value.Pushes != pushes[s.Key].Pushes).ToList();
                var unaffected = pushed.Count(s => !reachesHot.Contains(s.Key.Deployment));
                var bytes = pushed.Sum(s => s.Value.Bytes - pushes[s.Key].Bytes);
                var sorted = taken.Select(t => t.TotalMilliseconds).Order().ToArray();
                changes.Add($"  {what}: {waits.Count} sidecars applied it, p99 {sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(0.99 * sorted.Length) - 1)]:F0} ms; " +
                            $"{pushed.Count} pushes, {bytes / 1024.0:F0} KiB ({bytes / 1024.0 / Math.Max(1, pushed.Count):F1} KiB each); pushes to sidecars that cannot reach \"hot\": {unaffected}");
            }
        }
        finally
        {
            foreach (var sidecar in sidecars.Values)
            {
                await sidecar.DisposeAsync();
            }

            cp.Kill(entireProcessTree: true);
            await cp.WaitForExitAsync();
            Directory.Delete(work, recursive: true);
        }
    }

    private static string? Hot(Snapshot snapshot) =>
        snapshot.Resources.FirstOrDefault(r => r.Kind == "Service" && r.Name == "hot" && r.Namespace == HotNamespace)?.Yaml;

    private static SimulatedSidecar Connect(FakeKubernetesApiServer api, Uri address, Pod pod) =>
        SimulatedSidecar.Start(address, pod.Deployment, pod.Namespace, $"{pod.Name}.{pod.Namespace}", pod.Ip, serviceAccount: pod.Deployment,
            token: api.CreateServiceAccountToken(pod.Namespace, pod.Deployment, pod: pod.Name));

    private static Pod NewPod(FakeKubernetesApiServer api, Deployment deployment)
    {
        var n = _nextIp++;
        var ip = new IPAddress([127, 1, (byte)(n / 250), (byte)(n % 250 + 1)]);
        var pod = new Pod($"{deployment.Name}-{deployment.Hash}-{n:x5}", deployment.Namespace, deployment.Name, ip);
        api.Apply($$$"""
            {"apiVersion":"v1","kind":"Pod",
             "metadata":{"name":"{{{pod.Name}}}","namespace":"{{{pod.Namespace}}}","labels":{"app":"{{{deployment.Name}}}","pod-template-hash":"{{{deployment.Hash}}}"},
                         "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"{{{deployment.Name}}}-{{{deployment.Hash}}}","uid":"rs-{{{deployment.Name}}}-{{{deployment.Hash}}}","controller":true}]},
             "spec":{"serviceAccountName":"{{{deployment.Name}}}","containers":[{"name":"app","image":"app:1"},{"name":"meshproxy","image":"meshproxy/sidecar:dev"}]},
             "status":{"phase":"Running","podIP":"{{{ip}}}","podIPs":[{"ip":"{{{ip}}}"}]}}
            """);
        return pod;
    }

    private static void ApplyService(FakeKubernetesApiServer api, string ns, string name, string app, int index) => api.Apply($$$"""
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"{{{name}}}","namespace":"{{{ns}}}"},
         "spec":{"type":"ClusterIP","clusterIP":"10.96.{{{index / 250}}}.{{{index % 250 + 1}}}","clusterIPs":["10.96.{{{index / 250}}}.{{{index % 250 + 1}}}"],
                 "selector":{"app":"{{{app}}}"},"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080}]}}
        """);

    /// <summary>The Service's endpoints as the EndpointSlice controller writes them: at most 100 per slice.</summary>
    private static void ApplySlices(FakeKubernetesApiServer api, string ns, string service, IEnumerable<(Pod Pod, bool Ready, bool Terminating)> endpoints)
    {
        var chunks = endpoints.Chunk(100).ToList();
        for (var i = 0; i < Math.Max(1, chunks.Count); i++)
        {
            var items = i < chunks.Count ? string.Join(",", chunks[i].Select(e => $$$"""
                {"addresses":["{{{e.Pod.Ip}}}"],"conditions":{"ready":{{{Bool(e.Ready)}}},"serving":true,"terminating":{{{Bool(e.Terminating)}}}},
                 "targetRef":{"kind":"Pod","namespace":"{{{ns}}}","name":"{{{e.Pod.Name}}}"}}
                """)) : string.Empty;
            api.Apply($$$"""
                {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
                 "metadata":{"name":"{{{service}}}-{{{i}}}","namespace":"{{{ns}}}","labels":{"kubernetes.io/service-name":"{{{service}}}","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},
                 "addressType":"IPv4","endpoints":[{{{items}}}],"ports":[{"name":"http","protocol":"TCP","port":8080}]}
                """);
        }
    }

    private static void WriteSidecar(string directory, Deployment deployment, IEnumerable<string> egress) =>
        File.WriteAllText(Path.Combine(directory, $"{deployment.Namespace}-{deployment.Name}.yaml"), $$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: {{deployment.Name}}, namespace: {{deployment.Namespace}} }
            spec:
              app: { port: 8080 }
              egress: [{ hosts: [{{string.Join(", ", egress)}}] }]

            """);

    private static string Bool(bool value) => value ? "true" : "false";

    private sealed record Deployment(string Name, string Namespace, string Hash)
    {
        public List<Pod> Pods { get; } = [];
    }

    private sealed record Pod(string Name, string Namespace, string Deployment, IPAddress Ip)
    {
        /// <summary>The address as the pushed Service's YAML quotes it: a whole-address match ("127.1.0.1" is not in "127.1.0.10").</summary>
        public string Quoted => $"\"{Ip}\"";
    }
}
