using System.Text.Json.Nodes;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Sidecar.Identity;
using Microsoft.Extensions.DependencyInjection;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// Issue 18 item 3 on the fake API server, over real gRPC: the control plane (in process, with a CA and the Kubernetes
/// source) keeps the trust-bundle ConfigMap in every meshed namespace, and serves a config stream only to the workload
/// its credential proves: grpc-js sidecars with pod tokens (their own, another pod's, none, a forged one) on the
/// plaintext port, and the real sidecar over TLS (15012) with its token, then with its SVID alone.
/// </summary>
public sealed class TrustDistributionTests : IAsyncLifetime
{
    private const string ConfigMap = "meshproxy-ca-root-cert";
    private const int PermissionDenied = 7;
    private const int Unauthenticated = 16;

    private readonly LogCapture _logs = new();
    private FakeKubernetesApiServer _api = null!;
    private k8s.Kubernetes _client = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApiServer.StartAsync();
        _client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = _api.BaseUri.ToString() });
        // shop: labelled for injection. billing: not labelled, but holds a pod the injector touched (opted in by its own
        // label). plain: neither. leaving: labelled, but being deleted.
        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"meshproxy-injection":"enabled"}}}""");
        _api.Apply(KubeJson.Namespace("billing"));
        _api.Apply(KubeJson.Namespace("plain"));
        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"leaving","labels":{"meshproxy-injection":"enabled"},"deletionTimestamp":"2026-12-07T00:00:00Z"},"status":{"phase":"Terminating"}}""");
        _api.Apply(InjectedPod("billing", "ledger-1", "10.2.0.1", "ledger"));
        _api.Apply(KubeJson.Pod("plain", "tool-1", "10.3.0.1", serviceAccount: "tool"));
        // The grpc-js peers name themselves "<workload>-grpcjs.<ns>" and connect from 127.0.0.1.
        _api.Apply(KubeJson.Pod("shop", "web-grpcjs", "127.0.0.1", serviceAccount: "web", app: "web"));
        _api.Apply(KubeJson.Pod("shop", "web2-grpcjs", "127.0.0.1", serviceAccount: "web", app: "web"));
        _api.Apply(KubeJson.Pod("shop", "api-grpcjs", "127.0.0.1", serviceAccount: "api", app: "api"));
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task The_trust_bundle_configmap_is_in_every_meshed_namespace_follows_the_bundle_and_comes_back()
    {
        var extraRoots = Path.Combine(RepoPaths.NewTempDirectory(), "extra-roots.pem");
        await File.WriteAllTextAsync(extraRoots, await RootPemAsync("root-c"), TestContext.Current.CancellationToken);
        await using var kit = await StartAsync(o => o with { AdditionalRootsFile = extraRoots });
        var bundle = Bundle(kit);
        Assert.Contains((await File.ReadAllTextAsync(Path.Combine(kit.Work, "ca", "root-cert.pem"), TestContext.Current.CancellationToken)).Trim(), bundle);

        // The labelled namespace and the one with an injected pod; not the others.
        await EventuallyAsync(() => Held("shop") == bundle && Held("billing") == bundle, "the bundle in shop and billing");
        var shop = _api.Get("v1", "ConfigMap", "shop", ConfigMap)!;
        Assert.Equal("true", shop["metadata"]!["labels"]!["meshproxy.io/trust-bundle"]!.GetValue<string>());
        Assert.Equal(["root-cert.pem"], shop["data"]!.AsObject().Select(p => p.Key));
        Assert.Null(_api.Get("v1", "ConfigMap", "plain", ConfigMap));
        Assert.Null(_api.Get("v1", "ConfigMap", "leaving", ConfigMap));
        Assert.DoesNotContain(_api.Requests, r => r.Contains("/namespaces/leaving/", StringComparison.Ordinal));
        // Only ConfigMaps of that name are asked for, across namespaces.
        Assert.Contains(_api.Requests, r => r.StartsWith("GET /api/v1/configmaps?", StringComparison.Ordinal) && r.Contains("fieldSelector=metadata.name%3Dmeshproxy-ca-root-cert", StringComparison.Ordinal));

        // A namespace labelled later, and an injected pod in a fresh one.
        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"plain","labels":{"meshproxy-injection":"enabled"}}}""");
        _api.Apply(KubeJson.Namespace("batch"));
        _api.Apply(InjectedPod("batch", "job-1", "10.4.0.1", "job"));
        await EventuallyAsync(() => Held("plain") == bundle && Held("batch") == bundle, "the bundle in plain and batch");

        // Deleted: it comes back. Edited: it is put back.
        Assert.True(_api.Delete("v1", "ConfigMap", "shop", ConfigMap));
        _api.ApplyRaw("v1", "ConfigMap", "billing", ConfigMap, o =>
        {
            o["data"] = new JsonObject { ["root-cert.pem"] = "-----BEGIN CERTIFICATE-----\nnot ours\n-----END CERTIFICATE-----\n" };
            return o;
        });
        await EventuallyAsync(() => Held("shop") == bundle && Held("billing") == bundle, "shop's recreated, billing's restored");

        // The bundle changes (a root rotation's first step: another root published beside the CA's own, picked up when
        // MeshConfig reloads the CA): every ConfigMap follows.
        var rootB = await RootPemAsync("root-b");
        await File.WriteAllTextAsync(extraRoots, rootB, TestContext.Current.CancellationToken);
        await File.WriteAllTextAsync(Path.Combine(kit.Work, "config", "mesh.yaml"), CaTestKit.MeshYaml(ttl: "12h"), TestContext.Current.CancellationToken);
        await EventuallyAsync(() => Bundle(kit) != bundle, "the CA reloaded with the new roots");
        var rotated = Bundle(kit);
        Assert.Contains(rootB.Trim(), rotated);
        await EventuallyAsync(() => new[] { "shop", "billing", "plain", "batch" }.All(ns => Held(ns) == rotated), "every ConfigMap holds the new bundle");
        Assert.Contains(_logs.WithEvent(42), l => l.Contains("Trust bundle ConfigMap billing/meshproxy-ca-root-cert updated (2 roots)", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_fake_api_server_refuses_configmaps_as_the_api_server_does()
    {
        // Status codes the publisher must live with (a namespace deleted between its informer's event and the write).
        using var http = new HttpClient { BaseAddress = _api.BaseUri };
        async Task<int> PostAsync(string ns, string body) =>
            (int)(await http.PostAsync($"/api/v1/namespaces/{ns}/configmaps", new StringContent(body, System.Text.Encoding.UTF8, "application/json"), TestContext.Current.CancellationToken)).StatusCode;

        Assert.Equal(404, await PostAsync("nowhere", """{"metadata":{"name":"x"},"data":{"a":"b"}}"""));
        Assert.Equal(403, await PostAsync("leaving", """{"metadata":{"name":"x"},"data":{"a":"b"}}"""));
        Assert.Equal(422, await PostAsync("shop", """{"metadata":{"name":"x"},"data":{"bad key/":"b"}}"""));
        Assert.Equal(201, await PostAsync("shop", """{"metadata":{"name":"x"},"data":{"a.pem":"b"}}"""));
        Assert.Equal(409, await PostAsync("shop", """{"metadata":{"name":"x"},"data":{"a.pem":"b"}}"""));
        Assert.Null(_api.Get("v1", "ConfigMap", "shop", "x")!["metadata"]!["generation"]);
    }

    [Fact]
    public async Task A_config_stream_is_served_only_to_the_workload_its_token_proves()
    {
        await using var kit = await StartAsync();
        var cp = kit.ControlPlane;

        // Its own pod's token: its own config, the workload from the Pod.
        await using (var web = cp.ConnectWithToken(_api.CreateServiceAccountToken("shop", "web", pod: "web-grpcjs"), "web", "shop"))
        {
            await web.NextSnapshotAsync(TimeSpan.FromSeconds(30));
            await TestControlPlane.EventuallyAsync(async () =>
                (await cp.SynczAsync()).EnumerateArray().Any(s => s.GetProperty("instanceId").GetString() == "web-grpcjs.shop" && s.GetProperty("serviceAccount").GetString() == "web"),
                "syncz lists web's sidecar");
        }

        (string Case, string? Token, int Code, string Details)[] cases =
        [
            ("api's pod claims web's pod", _api.CreateServiceAccountToken("shop", "api", pod: "api-grpcjs"), PermissionDenied,
                "the credential proves service account shop/api, but the stream claims pod shop/web-grpcjs, which runs as shop/web"),
            ("another pod of web's service account claims web's pod", _api.CreateServiceAccountToken("shop", "web", pod: "web2-grpcjs"), PermissionDenied,
                "the credential is bound to pod shop/web2-grpcjs, but the stream claims pod shop/web-grpcjs"),
            ("no token", null, Unauthenticated, "no credential: send the pod's projected service-account token"),
            ("a token minted for another audience", _api.CreateServiceAccountToken("shop", "web", pod: "web-grpcjs", audiences: ["vault"]), PermissionDenied,
                "is invalid for the target audiences"),
            ("not a token at all", "opaque-" + Guid.NewGuid(), PermissionDenied, "token lookup failed"),
        ];
        foreach (var (name, token, code, details) in cases)
        {
            await using var peer = token is null ? cp.Connect("web", "shop") : cp.ConnectWithToken(token, "web", "shop");
            var error = await peer.NextAsync(e => e.GetProperty("type").GetString() is "error" or "snapshot", TimeSpan.FromSeconds(30));
            Assert.True(error.GetProperty("type").GetString() == "error", $"{name}: served {error}");
            Assert.True(code == error.GetProperty("code").GetInt32(), $"{name}: {error}");
            Assert.Contains(details, error.GetProperty("details").GetString(), StringComparison.Ordinal);
        }

        var metrics = await cp.MetricsAsync();
        Assert.Contains("meshproxy_controlplane_stream_refusals_total{reason=\"workload_mismatch\"} 2", metrics);
        Assert.Contains("meshproxy_controlplane_stream_refusals_total{reason=\"missing_credential\"} 1", metrics);
        Assert.Contains("meshproxy_controlplane_stream_refusals_total{reason=\"token_rejected\"} 2", metrics);
        Assert.Contains(_logs.WithEvent(40), l => l.Contains("web-grpcjs.shop", StringComparison.Ordinal) && l.Contains("(workload_mismatch)", StringComparison.Ordinal) && l.Contains("shop/api (pod shop/api-grpcjs)", StringComparison.Ordinal));
    }

    /// <summary>
    /// Issue 18 leftover: a pod-bound token opens a config stream only for a caller that is its pod, checked as the CA
    /// checks a CSR (PodBinding): a token of pod web-far (10.1.0.9) presented from this host's address, and the token of
    /// a pod that has finished, are PERMISSION_DENIED <c>pod_mismatch</c> with a log line naming the pod, and no config is
    /// served. The finished pod's stream comes from the pod's own address and claims that very pod, so nothing but the
    /// pod binding refuses it.
    /// </summary>
    [Fact]
    public async Task A_pod_bound_token_opens_a_config_stream_only_from_its_own_running_pod()
    {
        _api.Apply(KubeJson.Pod("shop", "web-far", "10.1.0.9", serviceAccount: "web", app: "web"));
        await using var kit = await StartAsync();
        var cp = kit.ControlPlane;
        var finishedToken = _api.CreateServiceAccountToken("shop", "web", pod: "web-grpcjs");
        _api.ApplyRaw("v1", "Pod", "shop", "web-grpcjs", p =>
        {
            p["status"]!["phase"] = "Succeeded";
            return p;
        });
        await TestControlPlane.EventuallyAsync(
            () => Task.FromResult(cp.Host.Kubernetes!.Pods.Current.Items.TryGetValue("shop/web-grpcjs", out var pod) && pod.Status?.Phase == "Succeeded"), "the informer sees web-grpcjs finished");

        (string Case, string Token, string Details, string Pod)[] cases =
        [
            ("web-far's token from this host", _api.CreateServiceAccountToken("shop", "web", pod: "web-far"),
                "the token is bound to pod shop/web-far (10.1.0.9) but the request came from 127.0.0.1", "pod shop/web-far"),
            ("a finished pod's token from its own address", finishedToken, "pod shop/web-grpcjs has finished (phase Succeeded)", "pod shop/web-grpcjs"),
        ];
        foreach (var (name, token, details, pod) in cases)
        {
            await using var peer = cp.ConnectWithToken(token, "web", "shop");
            var error = await peer.NextAsync(e => e.GetProperty("type").GetString() is "error" or "snapshot", TimeSpan.FromSeconds(30));
            Assert.True(error.GetProperty("type").GetString() == "error", $"{name}: served {error}");
            Assert.True(PermissionDenied == error.GetProperty("code").GetInt32(), $"{name}: {error}");
            Assert.Contains(details, error.GetProperty("details").GetString(), StringComparison.Ordinal);
            Assert.Contains(_logs.WithEvent(40), l => l.Contains("web-grpcjs.shop", StringComparison.Ordinal) && l.Contains("(pod_mismatch)", StringComparison.Ordinal) && l.Contains(pod, StringComparison.Ordinal));
        }

        Assert.Contains("meshproxy_controlplane_stream_refusals_total{reason=\"pod_mismatch\"} 2", await cp.MetricsAsync());
        Assert.DoesNotContain((await cp.SynczAsync()).EnumerateArray(), s => s.GetProperty("instanceId").GetString() == "web-grpcjs.shop");
    }

    [Fact]
    public async Task The_sidecar_streams_config_over_tls_with_its_token_then_with_its_svid_alone()
    {
        await using var kit = await StartAsync(tls: true);
        await EventuallyAsync(() => Held("shop") is not null, "the trust bundle in shop");
        var work = RepoPaths.NewTempDirectory();
        // caFile is what the kubelet would mount from the ConfigMap.
        await File.WriteAllTextAsync(Path.Combine(work, "root-cert.pem"), Held("shop"), TestContext.Current.CancellationToken);
        var bootstrap = InProcessSidecar.WriteBootstrap(work, "web", "shop", $"https://127.0.0.1:{kit.ControlPlane.Host.GrpcTlsEndPoint!.Port}", tokenFile: "web.token", caFile: "root-cert.pem");
        var tokenFile = Path.Combine(work, "web.token");

        string serial;
        await using (var sidecar = await InProcessSidecar.StartAsync(bootstrap, InProcessSidecar.FastCertificateAuthority))
        {
            // Its pod (named as the sidecar names itself) and the pod's projected token, as the kubelet would provide.
            var pod = PodOf(sidecar);
            _api.Apply(KubeJson.Pod("shop", pod, "127.0.0.1", serviceAccount: "web", app: "web"));
            await File.WriteAllTextAsync(tokenFile, _api.CreateServiceAccountToken("shop", "web", pod: pod), TestContext.Current.CancellationToken);

            await EventuallyAsync(() => sidecar.Store.Current is { Provisional: false, Stale: false }, "config over TLS with the token", TimeSpan.FromSeconds(30));
            var identity = sidecar.Services.GetRequiredService<SidecarIdentity>();
            await EventuallyAsync(() => identity.Store.Current is not null, "an SVID from the CA", TimeSpan.FromSeconds(30));
            Assert.Equal(CaTestKit.SpiffeId("shop", "web"), identity.Store.Current!.SpiffeId.Value);
            serial = identity.Store.Current.Certificate.SerialNumber;
            await EventuallyAsync(() => File.Exists(sidecar.Source.SnapshotPath + ".key.pem"), "the SVID saved");
        }

        // No token any more: a restarted sidecar can only prove itself with the SVID it saved.
        File.Delete(tokenFile);
        var reviews = _api.TokenReviews;
        await using (var restarted = await InProcessSidecar.StartAsync(bootstrap, InProcessSidecar.FastCertificateAuthority))
        {
            var pod = PodOf(restarted);
            _api.Apply(KubeJson.Pod("shop", pod, "127.0.0.1", serviceAccount: "web", app: "web"));
            Assert.True(restarted.Store.Current.Stale);
            await EventuallyAsync(() => !restarted.Store.Current.Stale, "config confirmed over TLS with the SVID", TimeSpan.FromSeconds(30));
            Assert.Equal(serial, restarted.Services.GetRequiredService<SidecarIdentity>().Store.Current?.Certificate.SerialNumber);
            await TestControlPlane.EventuallyAsync(async () =>
                (await kit.ControlPlane.SynczAsync()).EnumerateArray().Any(s => s.GetProperty("instanceId").GetString() == restarted.Source.InstanceId),
                "syncz lists the restarted sidecar");
        }

        Assert.Equal(reviews, _api.TokenReviews);
    }

    [Fact]
    public async Task A_sidecar_whose_svid_proves_another_service_account_than_the_pod_it_claims_is_refused()
    {
        await using var kit = await StartAsync(tls: true);
        await EventuallyAsync(() => Held("shop") is not null, "the trust bundle in shop");
        var work = RepoPaths.NewTempDirectory();
        await File.WriteAllTextAsync(Path.Combine(work, "root-cert.pem"), Held("shop"), TestContext.Current.CancellationToken);
        var bootstrap = InProcessSidecar.WriteBootstrap(work, "api", "shop", $"https://127.0.0.1:{kit.ControlPlane.Host.GrpcTlsEndPoint!.Port}", tokenFile: "api.token", caFile: "root-cert.pem");
        var tokenFile = Path.Combine(work, "api.token");

        // api's sidecar in api's pod gets api's SVID, saved beside its snapshot.
        await using (var sidecar = await InProcessSidecar.StartAsync(bootstrap, InProcessSidecar.FastCertificateAuthority))
        {
            var pod = PodOf(sidecar);
            _api.Apply(KubeJson.Pod("shop", pod, "127.0.0.1", serviceAccount: "api", app: "api"));
            await File.WriteAllTextAsync(tokenFile, _api.CreateServiceAccountToken("shop", "api", pod: pod), TestContext.Current.CancellationToken);
            var identity = sidecar.Services.GetRequiredService<SidecarIdentity>();
            await EventuallyAsync(() => identity.Store.Current is not null && File.Exists(sidecar.Source.SnapshotPath + ".key.pem"), "api's SVID, saved", TimeSpan.FromSeconds(30));
        }

        // The same SVID, now from a pod that runs as web: refused, whatever the SVID's own validity.
        File.Delete(tokenFile);
        await using var impostor = await InProcessSidecar.StartAsync(bootstrap, InProcessSidecar.FastCertificateAuthority);
        _api.Apply(KubeJson.Pod("shop", PodOf(impostor), "127.0.0.1", serviceAccount: "web", app: "web"));
        await EventuallyAsync(() => _logs.WithEvent(40).Any(l => l.Contains(impostor.Source.InstanceId, StringComparison.Ordinal)
            && l.Contains("(workload_mismatch)", StringComparison.Ordinal)
            && l.Contains("the credential proves service account shop/api, but the stream claims pod", StringComparison.Ordinal)), "the SVID's stream refused");
        Assert.True(impostor.Store.Current.Stale);
        Assert.DoesNotContain((await kit.ControlPlane.SynczAsync()).EnumerateArray(), s => s.GetProperty("instanceId").GetString() == impostor.Source.InstanceId);
    }

    [Fact]
    public async Task Rbac_grants_exactly_the_configmap_and_namespace_requests_the_trust_bundle_makes()
    {
        await using (var kit = await StartAsync())
        {
            await EventuallyAsync(() => Held("shop") is not null && Held("billing") is not null, "the bundle in shop and billing");
            // An update too: an edited ConfigMap is replaced.
            _api.ApplyRaw("v1", "ConfigMap", "shop", ConfigMap, o =>
            {
                o["data"] = new JsonObject { ["root-cert.pem"] = "edited" };
                return o;
            });
            await EventuallyAsync(() => Held("shop") == Bundle(kit), "shop's restored");
        }

        var asked = RbacRules.Asked(_api.Requests).Where(r => r.Resource is "configmaps" or "namespaces");
        var granted = RbacRules.Granted().Where(r => r.Resource is "configmaps" or "namespaces");
        Assert.Equal(granted.Order(), asked.Order());
    }

    private async Task<CaTestKit> StartAsync(Func<MeshProxy.ControlPlane.Certificates.CertificateServiceOptions, MeshProxy.ControlPlane.Certificates.CertificateServiceOptions>? configure = null, bool tls = false) =>
        await CaTestKit.StartAsync(
            o => configure?.Invoke(o with { TokenStoreFile = string.Empty }) ?? o with { TokenStoreFile = string.Empty },
            tls: tls,
            host: o => o with { Kubernetes = new KubernetesSourceOptions(), KubernetesClient = _client },
            logs: _logs);

    /// <summary>The bundle as the control plane publishes it (one PEM per root), as one text.</summary>
    private static string Bundle(CaTestKit kit) => string.Concat(kit.ControlPlane.Host.Certificates!.Authority.Current.BundlePem);

    /// <summary>What the namespace's trust-bundle ConfigMap holds, or null without one.</summary>
    private string? Held(string ns) => _api.Get("v1", "ConfigMap", ns, ConfigMap)?["data"]?["root-cert.pem"]?.GetValue<string>();

    private static string PodOf(InProcessSidecar sidecar) => sidecar.Source.InstanceId[..^".shop".Length];

    private static string InjectedPod(string ns, string name, string ip, string serviceAccount) => $$$"""
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"{{{name}}}","namespace":"{{{ns}}}","labels":{"app":"{{{serviceAccount}}}","sidecar.meshproxy.io/inject":"true"},
          "annotations":{"sidecar.meshproxy.io/status":"{\"initContainers\":[\"meshproxy-init\",\"meshproxy\"],\"containers\":[],\"volumes\":[]}"}},
         "spec":{"serviceAccountName":"{{{serviceAccount}}}","containers":[{"name":"app","image":"app:1"}]},
         "status":{"phase":"Running","podIP":"{{{ip}}}","podIPs":[{"ip":"{{{ip}}}"}]}}
        """;

    /// <summary>A self-signed CA certificate made by openssl (another root to publish).</summary>
    private static async Task<string> RootPemAsync(string name)
    {
        var dir = RepoPaths.NewTempDirectory();
        var cert = Path.Combine(dir, "cert.pem");
        await CaTestKit.RunAsync("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", Path.Combine(dir, "key.pem"),
            "-out", cert, "-subj", "/O=test/CN=" + name, "-days", "30", "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        return await File.ReadAllTextAsync(cert);
    }

    private static Task EventuallyAsync(Func<bool> condition, string what, TimeSpan? timeout = null) =>
        TestControlPlane.EventuallyAsync(() => Task.FromResult(condition()), what, timeout ?? TimeSpan.FromSeconds(30));
}
