using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.ControlPlane.Tests.Kubernetes;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Identity;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.ControlPlane.Tests.Certificates;

/// <summary>
/// Root rotation of the Kubernetes-kept root with two replicas, on one fake clock shared by the control planes, the
/// sidecars' CA clients and the mutual-TLS peers (certificates live 10 minutes, the shortest MeshConfig allows; each
/// phase waits ~10.6 minutes of that clock). Each replica reaches the fake API server through its own relay, so one can
/// be cut off.
/// </summary>
public sealed class KubernetesCaRotationTests : IAsyncLifetime
{
    private const string Ns = KubernetesCaTests.Ns;
    private const string TrustDomain = CaTestKit.TrustDomain;

    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private readonly LogCapture _logs = new();
    private readonly List<IAsyncDisposable> _owned = [];
    private FakeKubernetesApiServer _api = null!;
    private string _work = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApiServer.StartAsync();
        _api.TokenClock = _clock;
        _api.Apply(KubeJson.Namespace("shop"));
        _api.Apply(KubeJson.Pod("shop", "web-1", "127.0.0.1", serviceAccount: "web", app: "web"));
        _api.Apply(KubeJson.Pod("shop", "api-1", "127.0.0.1", serviceAccount: "api", app: "api"));
        _work = RepoPaths.NewTempDirectory();
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
    public async Task Rotation_adds_the_new_root_first_switches_then_drops_the_old_one_and_mutual_tls_never_fails()
    {
        // api gets its certificates from replica a, web from replica b: both roots and bundles must agree across replicas.
        var (_, _, server, client) = await StartPairAsync();
        var oldRoot = RootInSecret();
        await using var echo = MtlsEcho.Server(server.Store, TrustDomain, _clock);

        // Load: four loops, each a new mutual-TLS connection (a full handshake, both sides verified) and one echo.
        var load = new MtlsLoad(echo.Port, client.Store, TrustDomain, _clock,
            ex => $"{_clock.GetUtcNow():HH:mm:ss} phase {Phase()}: {ex.Message} (server expires {server.Store.NotAfter:HH:mm:ss}, client {client.Store.NotAfter:HH:mm:ss})");

        // The operator asks; the leader generates the next root into the Secret and both replicas publish {old, new}.
        Annotate(CaSecrets.RotateAnnotation, "now");
        var phases = new List<string>();
        string? nextRoot = null;
        var maxRoots = 0;
        // 2 s of the clock per 30 ms: a 10-minute certificate lasts seconds of real time, so renewals keep up on a busy machine.
        for (var step = 0; step < 3000 && !(phases.Contains("switched") && Phase() == "none"); step++)
        {
            _clock.Advance(TimeSpan.FromSeconds(2));
            await Task.Delay(30, TestContext.Current.CancellationToken);
            var phase = Phase();
            if (phases.Count == 0 || phases[^1] != phase)
            {
                phases.Add(phase);
            }

            if (phase == "adding")
            {
                nextRoot ??= KubernetesCaTests.Decode(_api.Get("v1", "Secret", Ns, "meshproxy-ca")!, CaSecrets.NextRootCert);
                Assert.Equal(nextRoot, KubernetesCaTests.Decode(_api.Get("v1", "Secret", Ns, "meshproxy-ca")!, CaSecrets.NextRootCert));
            }

            maxRoots = Math.Max(maxRoots, Math.Max(server.Store.TrustBundle!.Roots.Length, client.Store.TrustBundle!.Roots.Length));
        }

        // Every phase in order, none skipped (the first may already be 'adding' after the first 10 s).
        Assert.Equal(["none", "adding", "switched", "none"], Collapse(["none", .. phases]));
        Assert.Equal(2, maxRoots);
        Assert.NotNull(nextRoot);
        using var newRoot = X509Certificate2.CreateFromPem(nextRoot);
        Assert.Equal(nextRoot.Trim(), RootInSecret().Trim());

        // Sidecars move to the new root at their renewals; then their bundles shrink to it alone.
        for (var step = 0; step < 1000 && !(server.Store.TrustBundle!.Roots.Length == 1 && client.Store.TrustBundle!.Roots.Length == 1 && server.Store.Current!.Certificate.Issuer == newRoot.Subject); step++)
        {
            _clock.Advance(TimeSpan.FromSeconds(2));
            await Task.Delay(30, TestContext.Current.CancellationToken);
        }

        await Task.Delay(500, TestContext.Current.CancellationToken);
        await load.DisposeAsync();
        await server.Client.DisposeAsync();
        await client.Client.DisposeAsync();

        Assert.Empty(load.Failures);
        Assert.True(load.Ok > 50, $"only {load.Ok} requests");
        using var old = X509Certificate2.CreateFromPem(oldRoot);
        Assert.Contains(old.Subject, load.Issuers);
        Assert.Contains(newRoot.Subject, load.Issuers);
        Assert.True(server.Store.TrustBundle!.Contains(newRoot));
        Assert.Single(server.Store.TrustBundle!.Roots);
        Assert.Equal(newRoot.Subject, client.Store.Current!.Certificate.Issuer);
        // The last step's line is written after its Secret update, which the loop above may have seen first.
        for (var wait = 0; wait < 600 && _logs.WithEvent(126).Count < 3; wait++)
        {
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }

        Assert.Equal(3, _logs.WithEvent(126).Count);  // three steps, each written once
    }

    /// <summary>
    /// Issue 18 leftover: the trust-bundle ConfigMap follows a rotation step as it happens (the host schedules a pass of
    /// the publisher on the CA's Changed), not at the publisher's 30 s resync. The clock stands still, so no timer (the
    /// resync, a retry, an informer's backoff) can write; and the root Secret and the ConfigMap already hold what the
    /// control plane would write before it starts, so the publisher's first pass writes nothing and no echo of its own
    /// write (the ConfigMap informer's ADDED event, which schedules another pass and once let this test pass without the
    /// wiring) is in flight when the step is taken. Only the step's own event can write the ConfigMap after that.
    /// </summary>
    [Fact]
    public async Task The_trust_bundle_configmap_follows_a_rotation_step_without_waiting_for_the_resync()
    {
        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"meshproxy-injection":"enabled"}}}""");
        var (cert, key) = CertificateAuthority.GenerateRootPem(
            new CertificateAuthorityOptions { TrustDomain = TrustDomain, DefaultTtl = TimeSpan.FromMinutes(10), MaxTtl = TimeSpan.FromMinutes(10), ClockSkewAllowance = TimeSpan.Zero }, _clock);
        var secret = CaSecrets.Write(new k8s.Models.V1ObjectMeta { Name = "meshproxy-ca", NamespaceProperty = Ns }, new CaRootState(cert, key, RotationPhase.None, DateTimeOffset.MinValue, null, null, null, false));
        _api.Apply(k8s.KubernetesJson.Serialize(secret));
        using (var root = X509Certificate2.CreateFromPem(cert))
        {
            // Byte for byte what the publisher writes (one PEM per root, each ending in a newline).
            _api.Apply(new JsonObject
            {
                ["apiVersion"] = "v1",
                ["kind"] = "ConfigMap",
                ["metadata"] = new JsonObject { ["name"] = "meshproxy-ca-root-cert", ["namespace"] = "shop" },
                ["data"] = new JsonObject { ["root-cert.pem"] = root.ExportCertificatePem() + "\n" },
            }.ToJsonString());
        }

        var (a, _) = await StartReplicaAsync("replica-a");
        var publisher = a.ControlPlane.Host.TrustBundle!;
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(publisher.Passes > 0 && publisher.Idle), "the publisher's first pass done, nothing due", TimeSpan.FromSeconds(30));
        Assert.DoesNotContain(_api.Requests, r => r.Contains("/configmaps", StringComparison.Ordinal) && (r.StartsWith("PUT", StringComparison.Ordinal) || r.StartsWith("POST", StringComparison.Ordinal)));
        Assert.Equal([cert.Trim()], RootsHeld("shop"));

        Annotate(CaSecrets.RotateAnnotation, "now");
        // One refresh round of the CA, run directly: the step's Changed is the only trigger left.
        await a.ControlPlane.Host.Certificates!.Authority.Kubernetes!.RefreshAsync(TestContext.Current.CancellationToken);
        Assert.Equal("adding", Phase());
        var nextRoot = KubernetesCaTests.Decode(_api.Get("v1", "Secret", Ns, "meshproxy-ca")!, CaSecrets.NextRootCert);
        await TestControlPlane.EventuallyAsync(
            () => Task.FromResult(RootsHeld("shop").Order(StringComparer.Ordinal).SequenceEqual(new[] { cert.Trim(), nextRoot.Trim() }.Order(StringComparer.Ordinal))),
            "both roots in shop's ConfigMap", TimeSpan.FromSeconds(30));
        Assert.Equal(2, a.ControlPlane.Host.Certificates!.Authority.Current.BundlePem.Count);
    }

    /// <summary>
    /// Issue 18 leftover: Istio's plug-in CA Secret (cacerts) created while the mesh runs on the self-managed root is
    /// switched to with the rotation's rules: its root joins the bundle first, then it signs, then the old root leaves,
    /// each step once every certificate of the step before has expired; mutual TLS never fails; the trust-bundle
    /// ConfigMap and both replicas end on the plug-in's root alone.
    /// </summary>
    [Fact]
    public async Task A_plugin_ca_created_while_running_is_switched_to_with_both_roots_trusted_until_every_certificate_is_reissued()
    {
        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"meshproxy-injection":"enabled"}}}""");
        var (a, b, server, client) = await StartPairAsync();
        using var oldRoot = X509Certificate2.CreateFromPem(RootInSecret());
        // At every step each workload's SVID (with its intermediates) must verify as a peer against the other's bundle.
        var peers = new PeerChecks(_clock, () => Phase(), server.Store, client.Store);
        var refusals = peers.Refusals;
        var issuers = new HashSet<string>(StringComparer.Ordinal);
        void CheckPeers()
        {
            issuers.Add(server.Store.Current!.Certificate.Issuer);
            issuers.Add(client.Store.Current!.Certificate.Issuer);
            refusals.AddRange(peers.Check());
        }

        // The operator creates cacerts (a corporate root and an intermediate for the mesh).
        var corpRoot = ApplyPluginCa("/O=corp/CN=Corp Root");
        using var corp = X509Certificate2.CreateFromPem(corpRoot);

        var phases = new List<string>();
        var maxRoots = 0;
        for (var step = 0; step < 3000 && Phase() != "plugin"; step++)
        {
            _clock.Advance(TimeSpan.FromSeconds(2));
            await Task.Delay(30, TestContext.Current.CancellationToken);
            var phase = Phase();
            if (phases.Count == 0 || phases[^1] != phase)
            {
                phases.Add(phase);
            }

            if (phase == "plugin-adding")
            {
                // Both roots trusted everywhere before anything is signed by the new CA.
                using var signing = X509Certificate2.CreateFromPem(a.ControlPlane.Host.Certificates!.Authority.Current.BundlePem[0]);
                Assert.Equal(oldRoot.Subject, signing.Subject);
            }

            maxRoots = Math.Max(maxRoots, Math.Max(server.Store.TrustBundle!.Roots.Length, client.Store.TrustBundle!.Roots.Length));
            CheckPeers();
        }

        // The last step may land between the loop's record and its condition.
        phases.Add(Phase());
        Assert.Equal(["none", "plugin-adding", "plugin-switched", "plugin"], Collapse(["none", .. phases]));
        Assert.Equal(2, maxRoots);

        // The sidecars move to the plug-in CA at their renewals, then trust its root alone.
        for (var step = 0; step < 1000 && !(server.Store.TrustBundle!.Roots.Length == 1 && client.Store.TrustBundle!.Roots.Length == 1 && server.Store.Current!.Certificate.Issuer.Contains("CN=ca", StringComparison.Ordinal)); step++)
        {
            _clock.Advance(TimeSpan.FromSeconds(2));
            await Task.Delay(30, TestContext.Current.CancellationToken);
            CheckPeers();
        }

        await server.Client.DisposeAsync();
        await client.Client.DisposeAsync();

        Assert.True(refusals.Count == 0, $"{refusals.Count} refusals:\n{string.Join("\n", refusals.Take(3))}");
        Assert.Contains(oldRoot.Subject, issuers);
        Assert.Contains(issuers, i => i.Contains("CN=ca", StringComparison.Ordinal));
        Assert.True(server.Store.TrustBundle!.Contains(corp));
        Assert.Single(server.Store.TrustBundle!.Roots);
        foreach (var kit in new[] { a, b })
        {
            Assert.Equal(corpRoot.Trim(), Assert.Single(kit.ControlPlane.Host.Certificates!.Authority.Current.BundlePem).Trim());
        }

        await TestControlPlane.EventuallyAsync(() => Task.FromResult(RootsHeld("shop").SequenceEqual([corpRoot.Trim()])), "the corp root alone in shop's ConfigMap", TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Issue 18 leftover: after the switch to a plug-in CA (plugin-switched) the operator puts another CA, under another
    /// root, in cacerts. Signing with it under the recorded bundle would give certificates no peer trusts; instead the
    /// switch goes back to plugin-adding (the self-managed root signs again, the bundle holds the old and new plug-in
    /// roots), then switches to the new plug-in CA and finishes; mutual TLS never fails.
    /// </summary>
    [Fact]
    public async Task A_plugin_ca_whose_root_changes_after_the_switch_sends_the_switch_back_and_mutual_tls_never_fails()
    {
        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"meshproxy-injection":"enabled"}}}""");
        var (a, b, server, client) = await StartPairAsync();
        var peers = new PeerChecks(_clock, () => Phase(), server.Store, client.Store);

        var first = ApplyPluginCa("/O=corp/CN=Corp Root 1");
        await StepUntilAsync(() => Phase() == "plugin-switched", peers, "the switch to the first plug-in CA");
        Assert.Equal(2, a.ControlPlane.Host.Certificates!.Authority.Current.BundlePem.Count);

        // The operator replaces cacerts: a new intermediate under a new root.
        var second = ApplyPluginCa("/O=corp/CN=Corp Root 2");
        var phases = new List<string> { "plugin-switched" };
        await StepUntilAsync(() => Phase() == "plugin", peers, "the switch to the second plug-in CA", phases);
        Assert.Equal(["plugin-switched", "plugin-adding", "plugin-switched", "plugin"], Collapse(phases));
        Assert.Single(_logs.WithEvent(126), l => l.Contains("plugin-adding again", StringComparison.Ordinal));

        // The sidecars move to the second plug-in CA at their renewals, then trust its root alone.
        using var secondRoot = X509Certificate2.CreateFromPem(second);
        await StepUntilAsync(() => server.Store.TrustBundle!.Roots.Length == 1 && client.Store.TrustBundle!.Roots.Length == 1, peers, "bundles of one root");
        await server.Client.DisposeAsync();
        await client.Client.DisposeAsync();

        Assert.True(peers.Refusals.Count == 0, $"{peers.Refusals.Count} refusals:\n{string.Join("\n", peers.Refusals.Take(3))}");
        Assert.True(server.Store.TrustBundle!.Contains(secondRoot));
        Assert.True(client.Store.TrustBundle!.Contains(secondRoot));
        Assert.Empty(peers.Check());  // each SVID verifies against the other's bundle of the second root alone
        foreach (var kit in new[] { a, b })
        {
            Assert.Equal(second.Trim(), Assert.Single(kit.ControlPlane.Host.Certificates!.Authority.Current.BundlePem).Trim());
        }

        Assert.NotEqual(first.Trim(), second.Trim());
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(RootsHeld("shop").SequenceEqual([second.Trim()])), "the second root alone in shop's ConfigMap", TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Issue 18 leftover: cacerts deleted while the switch to it is under way. In plugin-adding nothing it signed is out
    /// there: the switch is cancelled (phase none) and the self-managed root, which never stopped signing, stays. In
    /// plugin-switched it has signed certificates that are still valid: the self-managed root (in every bundle of the
    /// switch) signs again at once on every replica, the leader records phase switched with the plug-in's roots as the
    /// previous ones, and after one more wait they leave the bundle. Either way mutual TLS never fails, no replica stops
    /// signing, and the mesh ends on the self-managed root alone.
    /// </summary>
    [Theory]
    [InlineData("plugin-adding", new[] { "plugin-adding", "none" })]
    [InlineData("plugin-switched", new[] { "plugin-switched", "switched", "none" })]
    public async Task Cacerts_deleted_mid_switch_leaves_the_mesh_on_the_self_managed_root_and_mutual_tls_never_fails(string deletedIn, string[] expected)
    {
        _api.Apply("""{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"meshproxy-injection":"enabled"}}}""");
        var (a, b, server, client) = await StartPairAsync();
        var ownRoot = RootInSecret();
        using var own = X509Certificate2.CreateFromPem(ownRoot);
        var peers = new PeerChecks(_clock, () => Phase(), server.Store, client.Store);

        ApplyPluginCa("/O=corp/CN=Corp Root");
        await StepUntilAsync(() => Phase() == deletedIn, peers, deletedIn);
        if (deletedIn == "plugin-adding")
        {
            // The sidecars trust the plug-in's root beside their own before it goes.
            await StepUntilAsync(() => server.Store.TrustBundle!.Roots.Length == 2 && client.Store.TrustBundle!.Roots.Length == 2, peers, "both workloads trust both roots");
        }
        else
        {
            // Certificates the plug-in CA signed are out there before it goes.
            await StepUntilAsync(() => server.Store.Current!.Certificate.Issuer.Contains("CN=ca", StringComparison.Ordinal)
                && client.Store.Current!.Certificate.Issuer.Contains("CN=ca", StringComparison.Ordinal), peers, "both workloads hold a plug-in-signed SVID");
        }

        Assert.True(_api.Delete("v1", "Secret", Ns, "cacerts"));
        var phases = new List<string> { deletedIn };
        var unavailable = 0;
        await StepUntilAsync(() =>
        {
            unavailable += a.ControlPlane.Host.Certificates!.Authority.Unavailable is null && b.ControlPlane.Host.Certificates!.Authority.Unavailable is null ? 0 : 1;
            return Phase() == "none";
        }, peers, "the switch undone", phases);
        Assert.Equal(expected, Collapse(phases));

        // Both replicas, then every workload, back on the self-managed root, trusting it alone.
        await StepUntilAsync(() => BundleOf(a).Count == 1 && BundleOf(b).Count == 1
            && server.Store.TrustBundle!.Roots.Length == 1 && client.Store.TrustBundle!.Roots.Length == 1
            && server.Store.Current!.Certificate.Issuer == own.Subject && client.Store.Current!.Certificate.Issuer == own.Subject, peers, "SVIDs of the self-managed root alone");
        await server.Client.DisposeAsync();
        await client.Client.DisposeAsync();

        Assert.True(peers.Refusals.Count == 0, $"{peers.Refusals.Count} refusals:\n{string.Join("\n", peers.Refusals.Take(3))}");
        Assert.Equal(0, unavailable);  // neither replica stopped signing on the way
        Assert.Equal(ownRoot.Trim(), RootInSecret().Trim());
        foreach (var kit in new[] { a, b })
        {
            Assert.Equal(ownRoot.Trim(), Assert.Single(kit.ControlPlane.Host.Certificates!.Authority.Current.BundlePem).Trim());
            Assert.Null(kit.ControlPlane.Host.Certificates!.Authority.Unavailable);
        }

        if (deletedIn == "plugin-switched")
        {
            Assert.Single(_logs.WithEvent(126), l => l.Contains("switched back: cacerts is gone", StringComparison.Ordinal));
        }

        await TestControlPlane.EventuallyAsync(() => Task.FromResult(RootsHeld("shop").SequenceEqual([ownRoot.Trim()])), "the self-managed root alone in shop's ConfigMap", TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// The root Secret deleted while running (an operator's mistake) is an answer from the API server, not an outage:
    /// no replica stops signing when its last read grows older than ViewTtl, none makes a new root, and each logs why.
    /// </summary>
    [Fact]
    public async Task A_root_secret_deleted_while_running_leaves_every_replica_signing_with_the_root_it_read()
    {
        var (a, _) = await StartReplicaAsync("replica-a");
        var (b, _) = await StartReplicaAsync("replica-b");
        using var root = X509Certificate2.CreateFromPem(RootInSecret());
        var token = _api.CreateServiceAccountToken("shop", "web", pod: "web-1", lifetime: TimeSpan.FromDays(30));
        var csr = await a.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web"));

        Assert.True(_api.Delete("v1", "Secret", Ns, "meshproxy-ca"));
        var deleted = _clock.GetUtcNow();
        // Well past ViewTtl (30 s) and many refreshes (5 s) of the clock.
        await AdvanceUntilAsync(() => _logs.WithEvent(125).Count >= 4 && _clock.GetUtcNow() > deleted + TimeSpan.FromMinutes(2), "two minutes of refreshes without the Secret");

        foreach (var kit in new[] { a, b })
        {
            Assert.Null(kit.ControlPlane.Host.Certificates!.Authority.Unavailable);
            var signed = await kit.RequestAsync(csr, token);
            Assert.True(signed.Ok, signed.Details);
            using var leaf = X509Certificate2.CreateFromPem(signed.Chain[0]);
            Assert.Equal(root.Subject, leaf.Issuer);
        }

        Assert.Null(_api.Get("v1", "Secret", Ns, "meshproxy-ca"));
    }

    [Fact]
    public async Task A_replica_that_loses_the_lease_mid_rotation_stops_signing_and_the_new_holder_finishes_with_the_same_next_root()
    {
        var (a, relayA) = await StartReplicaAsync("replica-a");
        var (b, _) = await StartReplicaAsync("replica-b");
        Assert.True(a.ControlPlane.Host.Certificates!.Authority.Kubernetes!.IsLeader);
        var token = _api.CreateServiceAccountToken("shop", "web", pod: "web-1", lifetime: TimeSpan.FromDays(30));
        var csr = await a.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web"));

        // a (the holder) starts the rotation: the next root is in the Secret, both replicas publish both roots.
        Annotate(CaSecrets.RotateAnnotation, "now");
        await AdvanceUntilAsync(() => Phase() == "adding", "a steps into 'adding'");
        var nextRoot = KubernetesCaTests.Decode(_api.Get("v1", "Secret", Ns, "meshproxy-ca")!, CaSecrets.NextRootCert);
        await AdvanceUntilAsync(() => BundleOf(a).Count == 2 && BundleOf(b).Count == 2, "both replicas publish {old, new}");

        // a is cut off from the API server (its open connections hang, new ones are refused): it loses the Lease
        // without knowing, and once its view of the Secret is 30 s old it signs nothing.
        relayA.Target = new IPEndPoint(IPAddress.Loopback, ClosedPort.Next());
        relayA.Freeze();
        await AdvanceUntilAsync(() => a.ControlPlane.Host.Certificates!.Authority.Unavailable is not null, "a stops signing");
        var refused = await a.RequestAsync(csr, token);
        Assert.Equal(14, refused.Code);  // UNAVAILABLE: the sidecar retries, through the Service, on b
        Assert.Contains("ca_unavailable", refused.Details, StringComparison.Ordinal);
        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"ca_unavailable\"} 1", await a.ControlPlane.MetricsAsync());

        // b takes the Lease and finishes the rotation from the Secret's state: the root a generated, not one of its own.
        await AdvanceUntilAsync(() => Phase() == "switched", "b steps into 'switched'");
        Assert.Equal("replica-b", _api.Get("coordination.k8s.io/v1", "Lease", Ns, "meshproxy-ca")!["spec"]!["holderIdentity"]!.GetValue<string>());
        Assert.Equal(nextRoot, KubernetesCaTests.Decode(_api.Get("v1", "Secret", Ns, "meshproxy-ca")!, CaSecrets.RootCert));
        var fromB = await b.RequestAsync(csr, token);
        Assert.True(fromB.Ok, fromB.Details);
        using (var issuer = X509Certificate2.CreateFromPem(nextRoot))
        using (var leaf = X509Certificate2.CreateFromPem(fromB.Chain[0]))
        {
            Assert.Equal(issuer.Subject, leaf.Issuer);
        }

        Assert.Equal(2, fromB.Bundle.Length);

        // a comes back: it reads the Secret and signs as b does (same root, same bundle), not with what it held.
        relayA.Target = new IPEndPoint(IPAddress.Loopback, _api.BaseUri.Port);
        await AdvanceUntilAsync(() => a.ControlPlane.Host.Certificates!.Authority.Unavailable is null, "a reads the Secret again");
        var fromA = await a.RequestAsync(csr, token);
        Assert.True(fromA.Ok, fromA.Details);
        Assert.Equal(fromB.Bundle, fromA.Bundle);
        using (var leafA = X509Certificate2.CreateFromPem(fromA.Chain[0]))
        using (var leafB = X509Certificate2.CreateFromPem(fromB.Chain[0]))
        {
            Assert.Equal(leafB.Issuer, leafA.Issuer);
        }

        await AdvanceUntilAsync(() => Phase() == "none", "the old root is dropped");
        Assert.Equal(nextRoot, KubernetesCaTests.Decode(_api.Get("v1", "Secret", Ns, "meshproxy-ca")!, CaSecrets.RootCert));
    }

    /// <summary>Two replicas; api's workload gets its certificates from a, web's from b; returns once both hold one.</summary>
    private async Task<(CaTestKit A, CaTestKit B, (CertificateAuthorityClient Client, SvidStore Store) Server, (CertificateAuthorityClient Client, SvidStore Store) Client)> StartPairAsync()
    {
        var (a, _) = await StartReplicaAsync("replica-a");
        var (b, _) = await StartReplicaAsync("replica-b");
        var server = Workload(a, "api");
        var client = Workload(b, "web");
        await server.Client.StartAsync(TestContext.Current.CancellationToken);
        await client.Client.StartAsync(TestContext.Current.CancellationToken);
        // A first attempt that lost a race with start-up is retried after a backoff on the shared clock: move it on.
        await AdvanceUntilAsync(() => server.Client.FirstCertificate.IsCompletedSuccessfully && client.Client.FirstCertificate.IsCompletedSuccessfully, "both workloads hold a certificate", TimeSpan.FromSeconds(1));
        return (a, b, server, client);
    }

    /// <summary>Secret cacerts (replaced if there is one) with an openssl-made intermediate under a new root of that subject; the root's PEM.</summary>
    private string ApplyPluginCa(string rootSubject)
    {
        var pki = new OpenSslCa(RepoPaths.NewTempDirectory(), "URI:" + CaTestKit.SpiffeId("shop", "web"));
        pki.MakeRoot("root", rootSubject);
        pki.Issue("ca", "root", KubernetesCaTests.IntermediateExtensions);
        var root = File.ReadAllText(pki.Cert("root"));
        _api.Delete("v1", "Secret", Ns, "cacerts");
        _api.Apply(KubernetesCaTests.PluginSecret(File.ReadAllText(pki.Cert("ca")), File.ReadAllText(pki.Key("ca")), root, File.ReadAllText(pki.Cert("ca")) + root));
        return root;
    }

    /// <summary>Moves the shared clock 2 s per 30 ms, checking the peers at every step, until <paramref name="condition"/> holds; records phase changes.</summary>
    private async Task StepUntilAsync(Func<bool> condition, PeerChecks peers, string what, List<string>? phases = null)
    {
        for (var step = 0; step < 3000; step++)
        {
            if (phases is not null && phases[^1] != Phase())
            {
                phases.Add(Phase());
            }

            if (condition())
            {
                return;
            }

            _clock.Advance(TimeSpan.FromSeconds(2));
            await Task.Delay(30, TestContext.Current.CancellationToken);
            peers.Refusals.AddRange(peers.Check());
        }

        Assert.Fail($"never happened: {what}");
    }

    /// <summary>Each workload's SVID (with its intermediates) verified as a peer against the other's bundle.</summary>
    private sealed class PeerChecks(TimeProvider clock, Func<string> phase, SvidStore one, SvidStore other)
    {
        private readonly PeerCertificateVerifier _verifier = new(clock);

        public List<string> Refusals { get; } = [];

        public List<string> Check()
        {
            var refused = new List<string>();
            foreach (var (own, peer) in new[] { (one, other), (other, one) })
            {
                if (_verifier.VerifyOwn(own.Current!, peer.TrustBundle!, TrustDomain) is { } refusal)
                {
                    refused.Add($"{clock.GetUtcNow():HH:mm:ss} phase {phase()}: {own.Current!.SpiffeId} refused as {refusal.Role}: {refusal.Result.Message}");
                }
            }

            return refused;
        }
    }

    private static List<string> Collapse(List<string> phases) => [.. phases.Where((p, i) => i == 0 || phases[i - 1] != p)];

    private string Phase() =>
        _api.Get("v1", "Secret", Ns, "meshproxy-ca")!["metadata"]!["annotations"]?[CaSecrets.PhaseAnnotation]?.GetValue<string>() ?? "none";

    /// <summary>The roots in the namespace's trust-bundle ConfigMap, one PEM each (trimmed); none without it.</summary>
    private List<string> RootsHeld(string ns)
    {
        var pem = _api.Get("v1", "ConfigMap", ns, "meshproxy-ca-root-cert")?["data"]?["root-cert.pem"]?.GetValue<string>() ?? string.Empty;
        var roots = new List<string>();
        const string End = "-----END CERTIFICATE-----";
        for (var at = pem.IndexOf("-----BEGIN", StringComparison.Ordinal); at >= 0; at = pem.IndexOf("-----BEGIN", at + 1, StringComparison.Ordinal))
        {
            var end = pem.IndexOf(End, at, StringComparison.Ordinal);
            roots.Add(pem[at..(end + End.Length)].Trim());
        }

        return roots;
    }

    private string RootInSecret() => KubernetesCaTests.Decode(_api.Get("v1", "Secret", Ns, "meshproxy-ca")!, CaSecrets.RootCert);

    private static IReadOnlyList<string> BundleOf(CaTestKit kit) => kit.ControlPlane.Host.Certificates!.Authority.Current.BundlePem;

    private void Annotate(string name, string value) =>
        _api.ApplyRaw("v1", "Secret", Ns, "meshproxy-ca", s =>
        {
            s["metadata"]!["annotations"] = new JsonObject { [name] = value };
            return s;
        });

    /// <summary>Moves the shared clock 5 s at a time (a refresh interval) until <paramref name="condition"/> holds.</summary>
    private async Task AdvanceUntilAsync(Func<bool> condition, string what, TimeSpan? stride = null)
    {
        for (var step = 0; step < 600; step++)
        {
            if (condition())
            {
                return;
            }

            _clock.Advance(stride ?? TimeSpan.FromSeconds(5));
            await Task.Delay(30, TestContext.Current.CancellationToken);
        }

        Assert.Fail($"never happened: {what}");
    }

    private async Task<(CaTestKit Kit, TcpRelay Relay)> StartReplicaAsync(string identity)
    {
        var relay = new TcpRelay(new IPEndPoint(IPAddress.Loopback, _api.BaseUri.Port));
        _owned.Add(relay);
        var client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = $"http://127.0.0.1:{relay.Port}" });
        var kit = await CaTestKit.StartAsync(
            // The clock runs 2-5 s per 30 ms here, so the default 10 s request timeout would be ~100 ms of real time: a
            // step's write could land while its caller gave up (no log line, as CI at eee9f32 saw). Two minutes is still
            // short enough for the cut-off replica's hung requests to end within a few seconds.
            o => o with { CaDirectory = null, TokenStoreFile = string.Empty, ClockSkewAllowance = TimeSpan.Zero, KubernetesCa = new KubernetesCaOptions { Namespace = Ns, Identity = identity, RequestTimeout = TimeSpan.FromMinutes(2) } },
            ttl: "10m", maxTtl: "10m", time: _clock,
            host: o => o with { Kubernetes = new KubernetesSourceOptions(), KubernetesClient = client },
            logs: _logs);
        _owned.Add(kit);
        return (kit, relay);
    }

    private (CertificateAuthorityClient Client, SvidStore Store) Workload(CaTestKit kit, string serviceAccount)
    {
        var tokenFile = Path.Combine(_work, serviceAccount + ".token");
        File.WriteAllText(tokenFile, _api.CreateServiceAccountToken("shop", serviceAccount, pod: serviceAccount + "-1", lifetime: TimeSpan.FromDays(30)));
        var store = new SvidStore();
        var client = new CertificateAuthorityClient(
            new ControlPlaneSpec($"http://{kit.ControlPlane.GrpcAddress}", tokenFile), Path.Combine(_work, "sidecar.yaml"), SpiffeId.ForWorkload(TrustDomain, "shop", serviceAccount), store,
            new CertificateAuthorityClientOptions { Rotation = new SvidRotatorOptions { InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromSeconds(1) } },
            _clock, LoggerFactory.Create(b => b.AddProvider(_logs)));
        return (client, store);
    }
}
