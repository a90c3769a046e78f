using System.Text;
using System.Text.Json.Nodes;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.ControlPlane.Tests.Kubernetes;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Identity;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.ControlPlane.Tests.Certificates;

/// <summary>
/// Kubernetes mode's CA: the control plane (in process, real ports, the Kubernetes source on the fake API server)
/// authenticates each CSR with the pod's projected service-account token through TokenReview. Callers are grpc-js
/// (ca_client.js, CSRs made by openssl) and the sidecar's own CA client, over real HTTP/2.
/// </summary>
public sealed class TokenReviewCertificateTests : IAsyncLifetime
{
    private const int PermissionDenied = 7;
    private const int Unavailable = 14;
    private static readonly string Web = CaTestKit.SpiffeId("shop", "web");

    private readonly LogCapture _logs = new();
    private FakeKubernetesApiServer _api = null!;
    private k8s.Kubernetes _client = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApiServer.StartAsync();
        _client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = _api.BaseUri.ToString() });
        _api.Apply(KubeJson.Namespace("shop"));
        // The callers run on this host: their pods have its loopback address (a pod's token serves from its pod's IP only).
        _api.Apply(KubeJson.Pod("shop", "web-1", "127.0.0.1", serviceAccount: "web", app: "web"));
        _api.Apply(KubeJson.Pod("shop", "web-2", "127.0.0.1", serviceAccount: "web", app: "web"));
        _api.Apply(KubeJson.Pod("shop", "api-1", "127.0.0.1", serviceAccount: "api", app: "api"));
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task A_pods_token_gets_an_svid_for_its_own_service_account_and_not_for_another()
    {
        await using var kit = await StartAsync();
        var webToken = _api.CreateServiceAccountToken("shop", "web", pod: "web-1");

        var own = await kit.RequestAsync(await kit.OpensslCsrAsync("URI:" + Web), webToken);
        Assert.True(own.Ok, own.Details);
        var leaf = kit.Write("web.pem", own.Chain[0]);
        Assert.Contains("URI:" + Web, await CaTestKit.RunAsync("openssl", "x509", "-in", leaf, "-noout", "-ext", "subjectAltName"));

        // The CSR claims another service account: the reviewed one decides.
        var other = await kit.RequestAsync(await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "api")), webToken);
        Assert.Equal(PermissionDenied, other.Code);
        Assert.Contains($"identity_mismatch: the CSR asks for '{CaTestKit.SpiffeId("shop", "api")}' but the caller is entitled to '{Web}'", other.Details);
        Assert.Contains(_logs.Lines, l => l.Level == Microsoft.Extensions.Logging.LogLevel.Warning && l.Message.Contains($"Refused to sign a certificate for {Web}: IdentityMismatch", StringComparison.Ordinal));

        // A token from api's own pod gets api's identity: one review per CSR, nothing remembered across callers.
        var api = await kit.RequestAsync(await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "api")), _api.CreateServiceAccountToken("shop", "api", pod: "api-1"));
        Assert.True(api.Ok, api.Details);
        Assert.Equal(3, _api.TokenReviews);
        Assert.Contains("meshproxy_controlplane_certificates_issued_total 2", await kit.ControlPlane.MetricsAsync());
    }

    [Fact]
    public async Task Forged_expired_wrong_audience_and_dead_pod_tokens_are_permission_denied_with_a_log_line_naming_the_pod()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _api.TokenClock = clock;
        _api.Apply(KubeJson.Pod("shop", "web-3", "127.0.0.1", serviceAccount: "web", app: "web"));
        await using var kit = await StartAsync();
        var csr = await kit.OpensslCsrAsync("URI:" + Web);
        var good = _api.CreateServiceAccountToken("shop", "web", pod: "web-1");
        var expired = _api.CreateServiceAccountToken("shop", "web", pod: "web-2", lifetime: TimeSpan.FromMinutes(10));
        var deadPod = _api.CreateServiceAccountToken("shop", "web", pod: "web-3");
        Assert.True((await kit.RequestAsync(csr, deadPod)).Ok);
        clock.Advance(TimeSpan.FromMinutes(11));
        _api.Delete("v1", "Pod", "shop", "web-3");

        (string Case, string Token, string Details, string Logged)[] cases =
        [
            ("forged: web's token rewritten to claim api", Forge(good, "api", "api-1"), "token lookup failed", "pod shop/api-1, service account shop/api"),
            ("expired", expired, "service account token has expired", "pod shop/web-2, service account shop/web"),
            ("minted for another audience", _api.CreateServiceAccountToken("shop", "web", pod: "web-1", audiences: ["vault"]), "is invalid for the target audiences [\"meshproxy\"]", "pod shop/web-1"),
            ("minted for the API server", _api.CreateServiceAccountToken("shop", "web", pod: "web-1", audiences: [FakeKubernetesApiServer.ApiServerAudience]), "is invalid for the target audiences", "pod shop/web-1"),
            ("its pod was deleted", deadPod, "pod \"web-3\" not found", "pod shop/web-3"),
            ("not a JWT at all", "opaque-" + Guid.NewGuid(), "token lookup failed", "a token that is not a Kubernetes service-account JWT"),
        ];
        foreach (var (name, token, details, logged) in cases)
        {
            var answer = await kit.RequestAsync(csr, token);
            Assert.False(answer.Ok, name);
            Assert.True(answer.Code == PermissionDenied, $"{name}: code {answer.Code} {answer.Details}");
            Assert.Contains(details, answer.Details, StringComparison.Ordinal);
            Assert.Contains(_logs.WithEvent(130), l => l.Contains("(token_rejected)", StringComparison.Ordinal) && l.Contains(logged, StringComparison.Ordinal));
        }

        Assert.Contains($"meshproxy_controlplane_certificate_refusals_total{{reason=\"token_rejected\"}} {cases.Length}", await kit.ControlPlane.MetricsAsync());
        Assert.True((await kit.RequestAsync(csr, good)).Ok);
    }

    /// <summary>
    /// Issue 18 leftover: the API server vouches for a pod-bound token's pod, not for who presents it. The CA signs for
    /// such a token only when the caller is that pod: its address among the pod's IPs, the pod not finished.
    /// </summary>
    [Fact]
    public async Task A_pods_token_presented_from_another_address_or_for_a_finished_pod_is_permission_denied_with_a_log_line_naming_the_pod()
    {
        _api.Apply(KubeJson.Pod("shop", "web-far", "10.1.0.9", serviceAccount: "web", app: "web"));
        _api.Apply(KubeJson.Pod("shop", "web-done", "127.0.0.1", serviceAccount: "web", app: "web", phase: "Succeeded"));
        await using var kit = await StartAsync();
        var csr = await kit.OpensslCsrAsync("URI:" + Web);

        // web-far's token, taken from its volume and presented from here.
        var stolen = await kit.RequestAsync(csr, _api.CreateServiceAccountToken("shop", "web", pod: "web-far"));
        Assert.True(stolen.Code == PermissionDenied, $"code {stolen.Code} {stolen.Details}");
        Assert.Contains("the token is bound to pod shop/web-far (10.1.0.9) but the request came from 127.0.0.1", stolen.Details, StringComparison.Ordinal);
        Assert.Contains(_logs.WithEvent(130), l => l.Contains("(pod_mismatch)", StringComparison.Ordinal) && l.Contains("pod shop/web-far", StringComparison.Ordinal));

        var finished = await kit.RequestAsync(csr, _api.CreateServiceAccountToken("shop", "web", pod: "web-done"));
        Assert.True(finished.Code == PermissionDenied, $"code {finished.Code} {finished.Details}");
        Assert.Contains("pod shop/web-done has finished (phase Succeeded)", finished.Details, StringComparison.Ordinal);
        Assert.Contains(_logs.WithEvent(130), l => l.Contains("(pod_mismatch)", StringComparison.Ordinal) && l.Contains("pod shop/web-done", StringComparison.Ordinal));

        // The pod's own token from its own address: signed.
        var own = await kit.RequestAsync(csr, _api.CreateServiceAccountToken("shop", "web", pod: "web-1"));
        Assert.True(own.Ok, own.Details);
        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"pod_mismatch\"} 2", await kit.ControlPlane.MetricsAsync());
    }

    /// <summary>
    /// Issue 18 leftover: a pod the API server knows (its token reviews fine) but this control plane's pod informer has
    /// not seen yet is UNAVAILABLE <c>pod_unknown</c>, so the sidecar retries rather than giving up; once the informer
    /// sees the pod, the same CSR with the same token is signed.
    /// </summary>
    [Fact]
    public async Task A_pod_the_informer_has_not_seen_yet_is_unavailable_then_the_same_csr_is_signed_once_it_appears()
    {
        await using var kit = await StartAsync();
        var csr = await kit.OpensslCsrAsync("URI:" + Web);
        _api.HoldWatchEvents = o => o["metadata"]?["name"]?.GetValue<string>() == "web-new";
        _api.Apply(KubeJson.Pod("shop", "web-new", "127.0.0.1", serviceAccount: "web", app: "web"));
        var token = _api.CreateServiceAccountToken("shop", "web", pod: "web-new");

        for (var attempt = 1; attempt <= 2; attempt++)
        {
            var early = await kit.RequestAsync(csr, token);
            Assert.True(early.Code == Unavailable, $"attempt {attempt}: code {early.Code} {early.Details}");
            Assert.Contains("pod shop/web-new (uid ", early.Details, StringComparison.Ordinal);
            Assert.Contains("is not known to this control plane yet; retry", early.Details, StringComparison.Ordinal);
        }

        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"pod_unknown\"} 2", await kit.ControlPlane.MetricsAsync());
        Assert.Contains(_logs.WithEvent(130), l => l.Contains("(pod_unknown)", StringComparison.Ordinal) && l.Contains("pod shop/web-new", StringComparison.Ordinal));

        _api.ReleaseWatchEvents();
        await TestControlPlane.EventuallyAsync(
            () => Task.FromResult(kit.ControlPlane.Host.Kubernetes!.Pods.Current.Items.ContainsKey("shop/web-new")), "the informer sees web-new");
        var signed = await kit.RequestAsync(csr, token);
        Assert.True(signed.Ok, signed.Details);
        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"pod_unknown\"} 2", await kit.ControlPlane.MetricsAsync());
    }

    /// <summary>
    /// Issue 18 leftover: a host-network pod's IP is its node's, shared by every host-network pod there, so the caller's
    /// address proves nothing and is not checked (its CSR from another address is signed); a pod on the pod network
    /// presenting its token from an address not its own is refused.
    /// </summary>
    [Fact]
    public async Task A_host_network_pods_token_is_not_bound_to_an_address_while_a_normal_pods_is()
    {
        // Both pods' IPs are another node's (10.1.0.x); the caller is this host (127.0.0.1).
        _api.Apply(KubeJson.Pod("shop", "web-host", "10.1.0.50", serviceAccount: "web", app: "web"));
        _api.ApplyRaw("v1", "Pod", "shop", "web-host", p =>
        {
            p["spec"]!["hostNetwork"] = true;
            return p;
        });
        _api.Apply(KubeJson.Pod("shop", "web-far", "10.1.0.9", serviceAccount: "web", app: "web"));
        await using var kit = await StartAsync();
        var csr = await kit.OpensslCsrAsync("URI:" + Web);

        await SignedForPodAsync(kit, csr, "web-host");
        await DeniedForPodAsync(kit, csr, "web-far", "the token is bound to pod shop/web-far (10.1.0.9) but the request came from 127.0.0.1");
        var metrics = await kit.ControlPlane.MetricsAsync();
        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"pod_mismatch\"} 1", metrics);
        Assert.Contains("meshproxy_controlplane_certificates_issued_total 1", metrics);
    }

    /// <summary>
    /// Issue 18 leftover: <c>--token-pod-address ignore</c> (sources rewritten by kube-proxy's --masquerade-all) drops the
    /// address check only: a pod's token from another address is signed, but the pod must still be the token's and not
    /// have finished.
    /// </summary>
    [Fact]
    public async Task With_token_pod_address_ignore_a_token_from_another_address_is_signed_but_a_finished_pod_is_still_refused()
    {
        _api.Apply(KubeJson.Pod("shop", "web-far", "10.1.0.9", serviceAccount: "web", app: "web"));
        _api.Apply(KubeJson.Pod("shop", "web-done", "10.1.0.10", serviceAccount: "web", app: "web", phase: "Succeeded"));
        CertificateServiceOptions? parsed = null;
        string[] args = ["--token-pod-address", "ignore"];
        for (var i = 0; i < args.Length; i++)
        {
            Assert.True(CertificateServiceOptions.TryReadArgument(args, ref i, ref parsed));
        }

        Assert.False(parsed!.TokenReview!.CheckPeerAddress);
        await using var kit = await StartAsync(review: parsed.TokenReview);
        var csr = await kit.OpensslCsrAsync("URI:" + Web);

        await SignedForPodAsync(kit, csr, "web-far");
        await DeniedForPodAsync(kit, csr, "web-done", "pod shop/web-done has finished (phase Succeeded)");
        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"pod_mismatch\"} 1", await kit.ControlPlane.MetricsAsync());
    }

    [Fact]
    public async Task Review_answers_that_prove_nothing_are_refused_and_unreadable_ones_are_unavailable()
    {
        await using var kit = await StartAsync();
        var csr = await kit.OpensslCsrAsync("URI:" + Web);
        var token = _api.CreateServiceAccountToken("shop", "web", pod: "web-1");

        (string Case, Func<string, string> Rewrite, int Code, string Details)[] cases =
        [
            ("an API server that ignores audiences", t => EditStatus(t, s => s.Remove("audiences")), PermissionDenied, "did not confirm audience 'meshproxy' (status.audiences [])"),
            ("another audience confirmed", t => EditStatus(t, s => s["audiences"] = new JsonArray("vault")), PermissionDenied, "did not confirm audience 'meshproxy'"),
            ("a user that is no service account", t => EditStatus(t, s => s["user"]!["username"] = "alice"), PermissionDenied, "'alice', not to a service account"),
            ("a service account name cut short", t => EditStatus(t, s => s["user"]!["username"] = "system:serviceaccount:shop"), PermissionDenied, "not to a service account"),
            ("not JSON", _ => "<html>bad gateway</html>", Unavailable, "could not be reviewed now"),
            ("cut in the middle", t => t[..(t.Length / 2)], Unavailable, "could not be reviewed now"),
            ("a string for a boolean", t => EditStatus(t, s => s["authenticated"] = "yes"), Unavailable, "could not be reviewed now"),
            ("a number for the extras", t => EditStatus(t, s => s["user"]!["extra"] = 5), Unavailable, "could not be reviewed now"),
            ("no status", t => EditReview(t, r => r.Remove("status")), Unavailable, "the answer has no status"),
            ("JSON null", _ => "null", Unavailable, "could not be reviewed now"),
        ];
        foreach (var (name, rewrite, code, details) in cases)
        {
            _api.RewriteTokenReview = rewrite;
            var answer = await kit.RequestAsync(csr, token);
            Assert.True(answer.Code == code && answer.Details!.Contains(details, StringComparison.Ordinal), $"{name}: code {answer.Code} {answer.Details}");
        }

        _api.RewriteTokenReview = null;
        Assert.True((await kit.RequestAsync(csr, token)).Ok);
    }

    [Fact]
    public async Task TokenReview_down_is_unavailable_the_sidecar_retries_and_keeps_its_svid_until_reviews_are_back()
    {
        await using var kit = await StartAsync();
        var csr = await kit.OpensslCsrAsync("URI:" + Web);
        var tokenFile = kit.Write("web.token", _api.CreateServiceAccountToken("shop", "web", pod: "web-1") + "\n");

        foreach (var status in new[] { 503, 500, 429 })
        {
            _api.TokenReviewFailure = status;
            var answer = await kit.RequestAsync(csr, File.ReadAllText(tokenFile).Trim());
            Assert.True(answer.Code == Unavailable, $"HTTP {status}: code {answer.Code} {answer.Details}");
            Assert.Contains($"HTTP {status}", answer.Details, StringComparison.Ordinal);
        }

        // The sidecar's own CA client, with its token file, while reviews fail: it keeps retrying and installs nothing.
        var store = new SvidStore();
        var client = new CertificateAuthorityClient(
            new ControlPlaneSpec(kit.ControlPlane.GrpcUri.ToString(), tokenFile), Path.Combine(kit.Work, "sidecar.yaml"), SpiffeId.ForWorkload(CaTestKit.TrustDomain, "shop", "web"), store,
            new CertificateAuthorityClientOptions
            {
                RequestedTtl = TimeSpan.FromSeconds(6),
                Rotation = new SvidRotatorOptions { InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromMilliseconds(500) },
            },
            TimeProvider.System, NullLoggerFactory.Instance);
        await using (client)
        {
            await client.StartAsync(TestContext.Current.CancellationToken);
            var before = _api.TokenReviews;
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(_api.TokenReviews >= before + 2), "the sidecar asked again after UNAVAILABLE", TimeSpan.FromSeconds(20));
            Assert.Null(store.Current);

            // The API server unreachable altogether (connections cut): the same answer.
            _api.TokenReviewFailure = null;
            _api.SetReachable(false);
            var cut = await kit.RequestAsync(csr, File.ReadAllText(tokenFile).Trim());
            Assert.True(cut.Code == Unavailable, $"unreachable: code {cut.Code} {cut.Details}");
            Assert.Null(store.Current);

            _api.SetReachable(true);
            await client.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);
            Assert.Equal(Web, store.SpiffeId!.Value);

            // Reviews fail again when the SVID is due for renewal (half of its 6 s): the renewal is refused and retried,
            // and the SVID in hand stays installed meanwhile; once reviews are back it is renewed.
            var first = store.Current!.Certificate.SerialNumber;
            _api.TokenReviewFailure = 503;
            before = _api.TokenReviews;
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(_api.TokenReviews >= before + 2), "renewal attempts refused", TimeSpan.FromSeconds(20));
            Assert.Equal(first, store.Current!.Certificate.SerialNumber);
            _api.TokenReviewFailure = null;
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(store.Current!.Certificate.SerialNumber != first), "renewed once reviews are back", TimeSpan.FromSeconds(20));
        }

        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"token_review_unavailable\"}", await kit.ControlPlane.MetricsAsync());
        Assert.Contains(_logs.WithEvent(130), l => l.Contains("(token_review_unavailable)", StringComparison.Ordinal) && l.Contains("pod shop/web-1", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_review_that_hangs_is_unavailable_after_its_timeout_on_the_control_planes_clock()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var kit = await StartAsync(clock);
        var csr = await kit.OpensslCsrAsync("URI:" + Web);
        var hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _api.HoldTokenReviews = hold.Task;
        try
        {
            var pending = kit.RequestAsync(csr, _api.CreateServiceAccountToken("shop", "web", pod: "web-1"));
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(_api.TokenReviews == 1), "the review reached the API server");
            Assert.False(pending.IsCompleted);

            clock.Advance(TimeSpan.FromSeconds(5));
            var answer = await pending;
            Assert.True(answer.Code == Unavailable && answer.Details!.Contains("no answer within 5 s", StringComparison.Ordinal), $"code {answer.Code} {answer.Details}");
        }
        finally
        {
            hold.SetResult();
        }

        _api.HoldTokenReviews = null;
        Assert.True((await kit.RequestAsync(csr, _api.CreateServiceAccountToken("shop", "web", pod: "web-1"))).Ok);
    }

    [Fact]
    public async Task Rbac_grants_exactly_create_on_tokenreviews_which_is_what_the_ca_asks()
    {
        await using (var kit = await StartAsync())
        {
            Assert.True((await kit.RequestAsync(await kit.OpensslCsrAsync("URI:" + Web), _api.CreateServiceAccountToken("shop", "web", pod: "web-1"))).Ok);
        }

        var asked = _api.Requests.Where(r => r.Contains(" /apis/authentication.k8s.io/", StringComparison.Ordinal)).Distinct().ToList();
        Assert.Equal(["POST /apis/authentication.k8s.io/v1/tokenreviews"], asked);

        var rbac = new YamlStream();
        rbac.Load(new StringReader(File.ReadAllText(Path.Combine(RepoPaths.Root, "docker", "kubernetes", "rbac.yaml"))));
        var role = rbac.Documents.Select(d => (YamlMappingNode)d.RootNode).Single(d => d["kind"].ToString() == "ClusterRole");
        var granted = ((YamlSequenceNode)role["rules"]).Cast<YamlMappingNode>()
            .Where(rule => ((YamlSequenceNode)rule["apiGroups"]).Any(g => g.ToString() == "authentication.k8s.io"))
            .SelectMany(rule =>
                from resource in (YamlSequenceNode)rule["resources"]
                from verb in (YamlSequenceNode)rule["verbs"]
                select $"{verb} {resource}")
            .ToList();
        Assert.Equal(["create tokenreviews"], granted);  // POST is create
    }

    [Fact]
    public async Task The_control_plane_process_with_source_kubernetes_and_a_ca_issues_for_reviewed_tokens_only()
    {
        var work = RepoPaths.NewTempDirectory();
        var config = Path.Combine(work, "config");
        Directory.CreateDirectory(config);
        await File.WriteAllTextAsync(Path.Combine(config, "mesh.yaml"), CaTestKit.MeshYaml(), TestContext.Current.CancellationToken);
        var kubeconfig = _api.WriteKubeconfig(Path.Combine(work, "kubeconfig"));
        string[] args =
        [
            Path.Combine(AppContext.BaseDirectory, "meshproxy-controlplane.dll"), "--source", "kubernetes", "--kubeconfig", kubeconfig, "--config-dir", config,
            "--grpc", "127.0.0.1:0", "--monitoring", "127.0.0.1:0", "--ca-dir", Path.Combine(work, "ca"),
        ];

        // A token store has no place beside TokenReview: refused at start-up, saying why.
        var refused = await Run.ProcessAsync("dotnet", [.. args, "--token-store", Path.Combine(work, "tokens.json")]);
        Assert.Equal(1, refused.Exit);
        Assert.Contains("--token-store is for the directory source", refused.Stderr, StringComparison.Ordinal);

        await using (var process = ExternalProcess.Start("dotnet", args, new Dictionary<string, string> { ["Logging__Console__FormatterName"] = "simple" }))
        {
            var listening = await process.WaitForLineAsync("Control plane listening", TimeSpan.FromSeconds(60));
            var grpc = listening[(listening.IndexOf("gRPC on ", StringComparison.Ordinal) + "gRPC on ".Length)..].Split(',')[0];
            var key = Path.Combine(work, "key.pem");
            var csr = Path.Combine(work, "csr.pem");
            await CaTestKit.RunAsync("openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", key);
            await CaTestKit.RunAsync("openssl", "req", "-new", "-key", key, "-subj", "/CN=web", "-addext", "subjectAltName=URI:" + Web, "-out", csr);

            async Task<System.Text.Json.JsonElement> RequestAsync(string token)
            {
                await using var peer = NodePeer.Start("ca_client.js", grpc, csr, token, "0");
                return await peer.NextAsync(_ => true, TimeSpan.FromSeconds(20));
            }

            var issued = await RequestAsync(_api.CreateServiceAccountToken("shop", "web", pod: "web-1"));
            Assert.True(issued.GetProperty("ok").GetBoolean(), issued.ToString());
            var other = await RequestAsync(_api.CreateServiceAccountToken("shop", "web", pod: "web-1", audiences: ["vault"]));
            Assert.Equal(PermissionDenied, other.GetProperty("code").GetInt32());
            Assert.Equal(["POST /apis/authentication.k8s.io/v1/tokenreviews"], _api.Requests.Where(r => r.Contains("authentication.k8s.io", StringComparison.Ordinal)).Distinct());
        }

        Directory.Delete(work, recursive: true);
    }

    [Fact]
    public void The_token_store_is_for_the_directory_source_only()
    {
        var kubernetes = new CertificateServiceOptions { CaDirectory = "ca", TokenStoreFile = string.Empty, TokenReview = new TokenReviewOptions() };
        Assert.Null(kubernetes.Validate());
        Assert.Contains("--token-store is for the directory source", (kubernetes with { TokenStoreFile = "tokens.json" }).Validate());
        Assert.Contains("needs --token-store", (kubernetes with { TokenReview = null }).Validate());

        CertificateServiceOptions? parsed = null;
        string[] args = ["--ca-dir", "ca", "--token-audience", "mesh-ca"];
        for (var i = 0; i < args.Length; i++)
        {
            Assert.True(CertificateServiceOptions.TryReadArgument(args, ref i, ref parsed));
        }

        Assert.Equal("mesh-ca", parsed!.TokenReview!.Audience);
    }

    [Theory]
    [InlineData("")]
    [InlineData("no-dots")]
    [InlineData("a.b")]
    [InlineData("a.b.c.d")]
    [InlineData("x.!!!not base64!!!.y")]
    [InlineData("x.bm90IGpzb24.y")] // "not json"
    [InlineData("x.WzEsMl0.y")] // [1,2]
    [InlineData("x.eyJrdWJlcm5ldGVzLmlvIjo1fQ.y")] // {"kubernetes.io":5}
    [InlineData("x.eyJrdWJlcm5ldGVzLmlvIjp7fQ.y")] // {"kubernetes.io":{} (cut)
    public void Claims_of_an_unreadable_token_are_described_never_thrown(string token) =>
        Assert.Equal("a token that is not a Kubernetes service-account JWT", TokenReviewAuthenticator.ClaimedBy(token));

    [Fact]
    public void Claims_name_the_pod_and_service_account_without_control_characters()
    {
        var payload = """{"kubernetes.io":{"namespace":"shop","pod":{"name":"web-1\nFAKE LOG LINE"},"serviceaccount":{"name":7}}}""";
        var token = $"x.{FakeKubernetesApiServer.Base64Url(Encoding.UTF8.GetBytes(payload))}.y";
        Assert.Equal("pod shop/web-1?FAKE LOG LINE, service account shop/? (claimed by the token, unverified)", TokenReviewAuthenticator.ClaimedBy(token));
    }

    // No backdating: a certificate of seconds would be past its half-life at once.
    private async Task<CaTestKit> StartAsync(TimeProvider? time = null, TokenReviewOptions? review = null) =>
        await CaTestKit.StartAsync(
            o => o with { TokenStoreFile = string.Empty, ClockSkewAllowance = TimeSpan.Zero, TokenReview = review ?? o.TokenReview },
            time: time,
            host: o => o with { Kubernetes = new KubernetesSourceOptions(), KubernetesClient = _client },
            logs: _logs);

    /// <summary>The CSR with a token of web's pod <paramref name="pod"/>, signed.</summary>
    private async Task SignedForPodAsync(CaTestKit kit, string csr, string pod)
    {
        var answer = await kit.RequestAsync(csr, _api.CreateServiceAccountToken("shop", "web", pod: pod));
        Assert.True(answer.Ok, $"{pod}: {answer.Details}");
    }

    /// <summary>The CSR with a token of web's pod <paramref name="pod"/>, PERMISSION_DENIED saying <paramref name="details"/>.</summary>
    private async Task DeniedForPodAsync(CaTestKit kit, string csr, string pod, string details)
    {
        var answer = await kit.RequestAsync(csr, _api.CreateServiceAccountToken("shop", "web", pod: pod));
        Assert.True(answer.Code == PermissionDenied, $"{pod}: code {answer.Code} {answer.Details}");
        Assert.Contains(details, answer.Details, StringComparison.Ordinal);
    }

    /// <summary>A valid token with its payload rewritten to claim another service account and pod; the signature is left as it was.</summary>
    private static string Forge(string token, string serviceAccount, string pod)
    {
        var parts = token.Split('.');
        var claims = JsonNode.Parse(FakeKubernetesApiServer.FromBase64Url(parts[1]))!.AsObject();
        claims["kubernetes.io"]!["serviceaccount"]!["name"] = serviceAccount;
        claims["kubernetes.io"]!["pod"]!["name"] = pod;
        claims["sub"] = $"system:serviceaccount:shop:{serviceAccount}";
        return $"{parts[0]}.{FakeKubernetesApiServer.Base64Url(Encoding.UTF8.GetBytes(claims.ToJsonString()))}.{parts[2]}";
    }

    private static string EditReview(string text, Action<JsonObject> edit)
    {
        var review = JsonNode.Parse(text)!.AsObject();
        edit(review);
        return review.ToJsonString();
    }

    private static string EditStatus(string text, Action<JsonObject> edit) => EditReview(text, r => edit(r["status"]!.AsObject()));
}
