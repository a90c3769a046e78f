using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using MeshProxy.Cli.Check;
using MeshProxy.Cli.Install;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Kubernetes.Webhook;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.ControlPlane.Tests.Install;
using MeshProxy.ControlPlane.Tests.Kubernetes;
using MeshProxy.Injection.Hosting;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.ControlPlane.Tests.Check;

/// <summary>
/// <c>meshproxy check</c> against the fake API server holding what <c>meshproxy install</c> renders, with the real
/// parts behind it: the control plane (its CA publishing the webhook's certificate and caBundle), the injector serving
/// that certificate, a real sidecar with an SVID reached through the pod proxy. Healthy: every check passes. Then one
/// part at a time is broken, and exactly the checks that depend on it fail, each with the reason.
/// </summary>
public sealed class CheckCommandTests : IAsyncLifetime
{
    private const int TrustBundleWriteFailedEvent = 43;
    private static readonly InstallOptions Install = new();

    private readonly LogCapture _logs = new();

    private FakeKubernetesApiServer _api = null!;
    private k8s.Kubernetes _client = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApiServer.StartAsync();
        _api.RegisterResource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced: false);
        _api.RegisterResource("apps", "v1", "deployments", "Deployment", namespaced: true);
        _api.RegisterResource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", namespaced: false);
        _api.RegisterResource("", "v1", "secrets", "Secret", namespaced: true);
        _api.RegisterResource("", "v1", "configmaps", "ConfigMap", namespaced: true);
        _client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = _api.BaseUri.ToString() });
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task Before_installing_an_empty_cluster_passes_and_a_missing_permission_or_stale_crd_is_named()
    {
        var (rc, results) = await CheckAsync(preInstall: true);
        Assert.True(rc == 0, Describe(results));
        Assert.Equal(["can reach the Kubernetes API", "can create every kind install applies", "can grant the control plane's RBAC rules", "meshproxy.io CRDs are current or absent"], results.Select(r => r.Name));
        Assert.Contains(FakeKubernetesApiServer.GitVersion, results[0].Detail, StringComparison.Ordinal);
        Assert.Equal("none yet: install creates them", results[3].Detail);

        _api.DeniedAccess.Add("create clusterroles.rbac.authorization.k8s.io");
        _api.DeniedAccess.Add("list endpointslices.discovery.k8s.io");
        _api.Apply("""
            {"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"sidecars.meshproxy.io"},
             "spec":{"group":"meshproxy.io","scope":"Namespaced","names":{"plural":"sidecars","kind":"Sidecar"},"versions":[{"name":"v1alpha0","served":true,"storage":true}]}}
            """);
        (rc, results) = await CheckAsync(preInstall: true);
        Assert.Equal(1, rc);
        AssertFailures(results, new()
        {
            ["can create every kind install applies"] = "not allowed to create clusterroles.rbac.authorization.k8s.io",
            ["can grant the control plane's RBAC rules"] = "not allowed to list endpointslices.discovery.k8s.io",
            ["meshproxy.io CRDs are current or absent"] = "sidecars.meshproxy.io do not serve v1alpha1",
        });
    }

    [Fact]
    public async Task A_healthy_install_passes_and_each_broken_part_fails_its_own_checks_for_its_reason()
    {
        var ct = TestContext.Current.CancellationToken;
        var installed = InstallManifestTests.Parse(Manifests.Render(Install));
        foreach (var obj in installed.Where(o => InstallManifestTests.Kind(o) is "CustomResourceDefinition" or "Namespace" or "Deployment" or "Service" or "MutatingWebhookConfiguration"))
        {
            _api.Apply(Ready(obj).ToJsonString());
        }

        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"meshproxy-injection":"enabled"}}}""");

        // The control plane publishes the webhook's certificate and caBundle; the injector serves the Secret's files.
        await using var kit = await CaTestKit.StartAsync(
            o => o with { TokenStoreFile = string.Empty },
            host: o => o with
            {
                Kubernetes = new KubernetesSourceOptions(),
                KubernetesClient = _client,
                Webhook = new WebhookCertificateOptions(Install.WebhookConfiguration, Install.Namespace, Install.Injector, Install.WebhookSecret) { CheckInterval = TimeSpan.FromHours(1) },
            },
            logs: _logs);
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(Webhooks()[0]!["clientConfig"]!["caBundle"] is not null), "caBundle published");
        var secret = _api.Get("v1", "Secret", Install.Namespace, Install.WebhookSecret)!;
        var certs = RepoPaths.NewTempDirectory();
        File.WriteAllText(Path.Combine(certs, "tls.crt"), Data(secret, "tls.crt"));
        File.WriteAllText(Path.Combine(certs, "tls.key"), Data(secret, "tls.key"));
        await using var injector = await InjectionWebhookServer.StartAsync(
            new WebhookServerOptions { Listen = new IPEndPoint(IPAddress.Loopback, 0), CertificateFile = Path.Combine(certs, "tls.crt"), KeyFile = Path.Combine(certs, "tls.key") },
            cancellationToken: ct);
        var injectorProxy = $"https:{Install.Injector}:443";
        _api.SetProxyTarget("services", Install.Namespace, injectorProxy, new Uri($"https://127.0.0.1:{injector.Port}"));
        // The control plane's one replica here, as its Deployment makes it; check asks every replica through the pod proxy.
        _api.Apply($$$"""
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"{{{Install.ControlPlane}}}-0","namespace":"{{{Install.Namespace}}}","labels":{"app":"{{{Install.ControlPlane}}}","{{{InstallOptions.RevisionLabel}}}":"{{{Install.Revision}}}"}},
             "spec":{"containers":[{"name":"controlplane","image":"controlplane:1"}]},"status":{"phase":"Running","podIP":"127.0.0.1"}}
            """);
        _api.SetProxyTarget("pods", Install.Namespace, $"{Install.ControlPlane}-0:{MeshChecks.MonitoringPort}", kit.ControlPlane.MonitoringUri);
        var bundle = string.Concat(kit.ControlPlane.Host.Certificates!.Authority.Current.BundlePem);
        _api.Apply(TrustBundle("shop", bundle));

        // A real sidecar in shop, with its service-account token: synced and holding an SVID.
        await using var web = await StartSidecarAsync(kit, "web", _api.CreateServiceAccountToken("shop", "web"), expectCertificate: true);

        var (rc, results) = await CheckAsync(preInstall: false);
        Assert.True(rc == 0, Describe(results));
        Assert.Equal(10, results.Count);
        Assert.Contains(results, r => r.Name == "every sidecar is synced" && r.Detail == "1 sidecars");
        Assert.Contains(results, r => r.Name == "trust bundles are consistent" && r.Detail == "1 meshed namespaces");

        // One part broken at a time, then put back.
        await BrokenAsync("a control plane replica not ready",
            () => Edit("apps/v1", "Deployment", Install.Namespace, Install.ControlPlane, d => d["status"]!["readyReplicas"] = Install.ControlPlaneReplicas - 1L),
            new() { ["control plane is ready"] = $"meshproxy-system/meshproxy-controlplane: {Install.ControlPlaneReplicas - 1}/{Install.ControlPlaneReplicas} replicas ready" },
            () => Edit("apps/v1", "Deployment", Install.Namespace, Install.ControlPlane, d => d["status"]!["readyReplicas"] = (long)Install.ControlPlaneReplicas));

        var injectorDeployment = _api.Get("apps/v1", "Deployment", Install.Namespace, Install.Injector)!;
        await BrokenAsync("the injector's Deployment deleted",
            () => _api.Delete("apps/v1", "Deployment", Install.Namespace, Install.Injector),
            new() { ["injector is ready"] = "Deployment meshproxy-system/meshproxy-injector does not exist" },
            () => _api.Apply(injectorDeployment.ToJsonString()));

        var caBundle = Webhooks()[0]!["clientConfig"]!["caBundle"]!.GetValue<string>();
        await BrokenAsync("a caBundle wiped",
            () => Edit("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", Install.WebhookConfiguration, c => c["webhooks"]![0]!["clientConfig"]!.AsObject().Remove("caBundle")),
            new()
            {
                ["webhook is configured with the mesh CA's caBundle"] = "no caBundle on namespace.sidecar.meshproxy.io",
                ["injector's serving certificate is valid for the caBundle"] = "not checked",
                ["trust bundles are consistent"] = "not checked",
            },
            () => Edit("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", Install.WebhookConfiguration, c => c["webhooks"]![0]!["clientConfig"]!["caBundle"] = caBundle));

        using var otherCa = MeshCertificateAuthority.Load(
            new CertificateServiceOptions { CaDirectory = Path.Combine(RepoPaths.NewTempDirectory(), "ca"), TokenStoreFile = string.Empty },
            Config.Resources.MeshConfigSpec.Default, TimeProvider.System, NullLoggerFactory.Instance);
        var (foreign, _) = otherCa.Current.Authority.IssueServingCertificate([Install.InjectorHost], TimeSpan.FromDays(30));
        var servingCertificate = secret["data"]!["tls.crt"]!.GetValue<string>();
        await BrokenAsync("a serving certificate from another CA (an old webhook-certs.sh Secret)",
            () => Edit("v1", "Secret", Install.Namespace, Install.WebhookSecret, s => s["data"]!["tls.crt"] = Convert.ToBase64String(Encoding.ASCII.GetBytes(foreign))),
            new() { ["injector's serving certificate is valid for the caBundle"] = "does not verify with the caBundle" },
            () => Edit("v1", "Secret", Install.Namespace, Install.WebhookSecret, s => s["data"]!["tls.crt"] = servingCertificate));

        await BrokenAsync("the injector down",
            () => _api.SetProxyTarget("services", Install.Namespace, injectorProxy, null),
            new() { ["injector is answering"] = "503" },
            () => _api.SetProxyTarget("services", Install.Namespace, injectorProxy, new Uri($"https://127.0.0.1:{injector.Port}")));

        // A sidecar that NACKs (grpc-js: its pod has no stats port to reach) and one whose certificate request is refused.
        _api.Apply(KubeJson.Pod("shop", "api-grpcjs", "127.0.0.1", serviceAccount: "api", app: "api"));
        // grpc-js does not retry the stream the control plane refuses while the pod is unknown: wait for the informer.
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(kit.ControlPlane.Host.Kubernetes!.Pods.Current.Items.ContainsKey("shop/api-grpcjs")), "the pod known");
        await using (var nacking = kit.ControlPlane.ConnectWithToken(_api.CreateServiceAccountToken("shop", "api", pod: "api-grpcjs"), "api", "shop"))
        {
            await nacking.NextSnapshotAsync();
            await nacking.SendAsync("nack bad route");
            await TestControlPlane.EventuallyAsync(async () => (await kit.ControlPlane.SynczAsync()).EnumerateArray().Any(r => r.GetProperty("status").GetString() == "NACK"), "NACK recorded");
            var (nackRc, nackResults) = await CheckAsync(preInstall: false);
            Assert.Equal(1, nackRc);
            AssertFailures(nackResults, new()
            {
                ["every sidecar is synced"] = "1 of 2 not synced: api-grpcjs.shop (NACK)",
                ["every sidecar has a valid certificate"] = "api-grpcjs.shop (its stats port answered 503)",
            });
        }

        await TestControlPlane.EventuallyAsync(async () => (await kit.ControlPlane.SynczAsync()).GetArrayLength() == 1, "the grpc-js peer gone");

        // A sidecar synced but without a certificate: its bootstrap names another service account (ledger) than its pod
        // runs as (web). Its token proves the pod, so its config stream is served; its CSR asks for ledger's SPIFFE ID,
        // which the token does not prove, and is refused (PERMISSION_DENIED), again and again.
        await using (var misnamed = await StartSidecarAsync(kit, "ledger", _api.CreateServiceAccountToken("shop", "web"), expectCertificate: false, podServiceAccount: "web"))
        {
            var (noCertRc, noCert) = await CheckAsync(preInstall: false);
            Assert.Equal(1, noCertRc);
            AssertFailures(noCert, new() { ["every sidecar has a valid certificate"] = $"{misnamed.Source.InstanceId} (no certificate yet)" });
            Assert.Contains(noCert, r => r.Name == "every sidecar is synced" && r.Detail == "2 sidecars");
        }

        await TestControlPlane.EventuallyAsync(async () => (await kit.ControlPlane.SynczAsync()).GetArrayLength() == 1, "the misnamed sidecar gone");

        // A namespace with another CA's roots, or a meshed one without the bundle: the control plane's trust-bundle
        // publisher repairs both within a pass (TrustDistributionTests), faster than a check could see them here, and the
        // new namespace (labelled for a revision) gets its ConfigMap: the check passes again without a hand repair.
        _api.Apply(TrustBundle("shop", string.Concat(otherCa.Current.BundlePem)));
        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"pay","labels":{"meshproxy.io/rev":"default"}}}""");
        await TestControlPlane.EventuallyAsync(async () => (await CheckAsync(preInstall: false)).Rc == 0, "the trust bundles repaired by the control plane");
        _api.Delete("v1", "Namespace", "", "pay");

        // One it cannot repair: made immutable with another CA's roots (the API server refuses every replace, 422, and the
        // control plane may not delete). The check fails naming it until it is deleted; then the control plane recreates it.
        var immutable = JsonNode.Parse(TrustBundle("shop", string.Concat(otherCa.Current.BundlePem)))!.AsObject();
        immutable["immutable"] = true;
        _api.Apply(immutable.ToJsonString());
        var (inconsistentRc, inconsistent) = await CheckAsync(preInstall: false);
        Assert.Equal(1, inconsistentRc);
        AssertFailures(inconsistent, new() { ["trust bundles are consistent"] = $"shop (other roots than the mesh CA's): the control plane keeps {MeshChecks.TrustBundleConfigMap} equal to its CA's bundle" });
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(_logs.WithEvent(TrustBundleWriteFailedEvent).Any(l => l.Contains("field is immutable", StringComparison.Ordinal))), "the control plane's replace refused");
        Assert.Equal(1, (await CheckAsync(preInstall: false)).Rc);
        _api.Delete("v1", "ConfigMap", "shop", MeshChecks.TrustBundleConfigMap);
        await TestControlPlane.EventuallyAsync(async () => (await CheckAsync(preInstall: false)).Rc == 0, "the trust bundle recreated by the control plane");

        var crd = _api.Get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "sidecars.meshproxy.io")!;
        await BrokenAsync("a CRD deleted",
            () => _api.Delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "sidecars.meshproxy.io"),
            new() { ["meshproxy.io CRDs are installed"] = "missing sidecars.meshproxy.io: apply `meshproxy crds`" },
            () => _api.Apply(crd.ToJsonString()));

        // No API: one line, nothing else attempted.
        _api.SetReachable(false);
        var (downRc, down) = await CheckAsync(preInstall: false);
        Assert.Equal(1, downRc);
        var only = Assert.Single(down);
        Assert.Equal("can reach the Kubernetes API", only.Name);
        Assert.False(only.Ok);
        _api.SetReachable(true);
    }

    /// <summary>Breaks one thing, checks that exactly <paramref name="expected"/> fail with those reasons, puts it back and checks all pass again.</summary>
    private async Task BrokenAsync(string breakage, Action @break, Dictionary<string, string> expected, Action? restore = null)
    {
        @break();
        var (rc, results) = await CheckAsync(preInstall: false);
        Assert.True(rc == 1, $"{breakage}: exit {rc}\n{Describe(results)}");
        AssertFailures(results, expected, breakage);
        restore?.Invoke();
        if (restore is not null)
        {
            (rc, results) = await CheckAsync(preInstall: false);
            Assert.True(rc == 0, $"{breakage}, put back: exit {rc}\n{Describe(results)}");
        }
    }

    private static void AssertFailures(List<CheckResult> results, Dictionary<string, string> expected, string? breakage = null)
    {
        var failed = results.Where(r => !r.Ok).ToList();
        Assert.True(failed.Select(f => f.Name).Order(StringComparer.Ordinal).SequenceEqual(expected.Keys.Order(StringComparer.Ordinal)), $"{breakage}: expected to fail: {string.Join("; ", expected.Keys)}\n{Describe(results)}");
        foreach (var f in failed)
        {
            Assert.True(f.Detail.Contains(expected[f.Name], StringComparison.Ordinal), $"{breakage}: '{f.Name}' failed with '{f.Detail}', not '{expected[f.Name]}'");
        }
    }

    /// <summary>Runs the command as the CLI does and reads its output back into results (one line each, the reason under a failure).</summary>
    private async Task<(int Rc, List<CheckResult> Results)> CheckAsync(bool preInstall)
    {
        var output = new StringWriter();
        var rc = await CheckCommand.RunAsync(_client, Install, preInstall, TimeProvider.System, output, TestContext.Current.CancellationToken);
        var lines = output.ToString().Split('\n');
        var results = new List<CheckResult>();
        for (var i = 0; i < lines.Length; i++)
        {
            if (lines[i].StartsWith("√ ", StringComparison.Ordinal))
            {
                var text = lines[i][2..];
                var open = text.IndexOf(" (", StringComparison.Ordinal);
                results.Add(new CheckResult(string.Empty, open < 0 ? text : text[..open], true, open < 0 ? string.Empty : text[(open + 2)..^1]));
            }
            else if (lines[i].StartsWith("× ", StringComparison.Ordinal))
            {
                results.Add(new CheckResult(string.Empty, lines[i][2..], false, lines[i + 1].Trim()));
            }
        }

        Assert.EndsWith(rc == 0 ? "Status check results are √\n" : "Status check results are ×\n", output.ToString().Replace("\r", string.Empty, StringComparison.Ordinal));
        return (rc, results);
    }

    private async Task<InProcessSidecar> StartSidecarAsync(CaTestKit kit, string workload, string token, bool expectCertificate, string? podServiceAccount = null)
    {
        var dir = RepoPaths.NewTempDirectory();
        File.WriteAllText(Path.Combine(dir, "token"), token + "\n");
        var bootstrap = InProcessSidecar.WriteBootstrap(dir, workload, "shop", kit.ControlPlane.GrpcUri.ToString(), tokenFile: "token");
        var sidecar = await InProcessSidecar.StartAsync(bootstrap);
        var instance = sidecar.Source.InstanceId;
        // Its pod, as the API server knows it (the sidecar names itself <pod>.<namespace>; the control plane serves a
        // sidecar only once its pod is known), and the pod proxy to its stats port.
        var pod = instance[..^".shop".Length];
        _api.Apply(KubeJson.Pod("shop", pod, "127.0.0.1", serviceAccount: podServiceAccount ?? workload, app: podServiceAccount ?? workload));
        _api.SetProxyTarget("pods", "shop", $"{pod}:{MeshChecks.SidecarStatsPort}", sidecar.StatsUri);
        await TestControlPlane.EventuallyAsync(
            async () => (await kit.ControlPlane.SynczAsync()).EnumerateArray().Any(r => r.GetProperty("instanceId").GetString() == instance && r.GetProperty("status").GetString() == "SYNCED"),
            $"{instance} synced",
            TimeSpan.FromSeconds(30));
        using var http = new HttpClient();
        await TestControlPlane.EventuallyAsync(
            async () => (await http.GetStringAsync(new Uri(sidecar.StatsUri, "/stats/prometheus"))).Contains("\nmeshproxy_certificate_expiry_seconds ", StringComparison.Ordinal) == expectCertificate
                && (expectCertificate || kit.ControlPlane.Host.Certificates is not null),
            $"{instance} certificate {(expectCertificate ? "issued" : "refused")}",
            TimeSpan.FromSeconds(30));
        return sidecar;
    }

    /// <summary>A Deployment as its controller reports it once every replica is ready.</summary>
    private static JsonObject Ready(JsonObject obj)
    {
        if (InstallManifestTests.Kind(obj) == "Deployment")
        {
            var replicas = obj["spec"]!["replicas"]!.GetValue<long>();
            obj["status"] = new JsonObject { ["replicas"] = replicas, ["updatedReplicas"] = replicas, ["readyReplicas"] = replicas, ["availableReplicas"] = replicas };
        }

        return obj;
    }

    private static string TrustBundle(string ns, string pem) => new JsonObject
    {
        ["apiVersion"] = "v1",
        ["kind"] = "ConfigMap",
        ["metadata"] = new JsonObject { ["name"] = MeshChecks.TrustBundleConfigMap, ["namespace"] = ns },
        ["data"] = new JsonObject { [MeshChecks.TrustBundleKey] = pem },
    }.ToJsonString();

    private JsonArray Webhooks() =>
        _api.Get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "", Install.WebhookConfiguration)!["webhooks"]!.AsArray();

    private void Edit(string apiVersion, string kind, string ns, string name, Action<JsonObject> edit) =>
        _api.ApplyRaw(apiVersion, kind, ns, name, o =>
        {
            edit(o);
            return o;
        });

    private static string Data(JsonObject secret, string key) => Encoding.ASCII.GetString(Convert.FromBase64String(secret["data"]![key]!.GetValue<string>()));

    private static string Describe(List<CheckResult> results) =>
        string.Join("\n", results.Select(r => $"{(r.Ok ? "√" : "×")} {r.Name}: {r.Detail}"));
}
