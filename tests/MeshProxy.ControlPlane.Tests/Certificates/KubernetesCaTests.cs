using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.ControlPlane.Tests.Kubernetes;
using MeshProxy.Identity;
using Microsoft.Extensions.Time.Testing;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.ControlPlane.Tests.Certificates;

/// <summary>
/// Kubernetes mode's shared CA on the fake API server: replicas in process (real ports, the Kubernetes source, each
/// with its own API client), the root in a Secret created once under a Lease, Istio's plug-in CA, a broken one refused.
/// </summary>
public sealed class KubernetesCaTests : IAsyncLifetime
{
    internal const string Ns = "meshproxy-system";
    private static readonly string Web = CaTestKit.SpiffeId("shop", "web");

    private readonly LogCapture _logs = new();
    private readonly List<k8s.Kubernetes> _clients = [];
    private FakeKubernetesApiServer _api = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApiServer.StartAsync();
        _api.Apply(KubeJson.Namespace("shop"));
        _api.Apply(KubeJson.Namespace(Ns));
        _api.Apply(KubeJson.Pod("shop", "web-1", "127.0.0.1", serviceAccount: "web", app: "web"));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients)
        {
            client.Dispose();
        }

        await _api.DisposeAsync();
    }

    [Fact]
    public async Task Two_replicas_starting_together_agree_on_one_root_created_once_under_the_lease()
    {
        // Both start at once: both find no root, both try the Lease; one creates it and the root, the other waits for it.
        var starting = new[] { StartReplicaAsync("replica-a"), StartReplicaAsync("replica-b") };
        await using var a = await starting[0];
        await using var b = await starting[1];

        var csr = await a.OpensslCsrAsync("URI:" + Web);
        var token = _api.CreateServiceAccountToken("shop", "web", pod: "web-1");
        var fromA = await a.RequestAsync(csr, token);
        var fromB = await b.RequestAsync(csr, token);
        Assert.True(fromA.Ok, fromA.Details);
        Assert.True(fromB.Ok, fromB.Details);

        // One root: the same single-root bundle from both, and each leaf verifies against it with openssl.
        Assert.Single(fromA.Bundle);
        Assert.Equal(fromA.Bundle, fromB.Bundle);
        var root = a.Write("root.pem", fromA.Bundle[0]);
        foreach (var (name, answer) in new[] { ("a", fromA), ("b", fromB) })
        {
            Assert.Contains(": OK", await CaTestKit.RunAsync("openssl", "verify", "-CAfile", root, a.Write($"leaf-{name}.pem", answer.Chain[0])));
        }

        // Created exactly once (one POST of the Secret), by the Lease's holder, and it is the root in the Secret.
        var secret = _api.Get("v1", "Secret", Ns, "meshproxy-ca")!;
        Assert.Equal(fromA.Bundle[0].Trim(), Decode(secret, CaSecrets.RootCert).Trim());
        Assert.Single(_api.SecretsAndLeases, r => r == $"POST /api/v1/namespaces/{Ns}/secrets");
        var lease = _api.Get("coordination.k8s.io/v1", "Lease", Ns, "meshproxy-ca")!;
        var holder = lease["spec"]!["holderIdentity"]!.GetValue<string>();
        Assert.Contains(_logs.WithEvent(121), l => l.Contains($"holding the Lease as {holder}", StringComparison.Ordinal));
        Assert.Equal(15, lease["spec"]!["leaseDurationSeconds"]!.GetValue<int>());
        Assert.Single(_logs.WithEvent(121));

        // The key never went to disk: no file under either kit's directory holds it.
        var key = Decode(secret, CaSecrets.RootKey).Trim();
        foreach (var kit in new[] { a, b })
        {
            Assert.DoesNotContain(Directory.EnumerateFiles(kit.Work, "*", SearchOption.AllDirectories), f => File.ReadAllText(f).Contains(key, StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task A_replica_waits_while_another_holds_the_lease_and_creates_the_root_once_that_lease_expires_on_the_clock()
    {
        // A replica took the Lease and died before it created the root: its Lease runs out on the (fake) clock.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _api.TokenClock = clock;
        var now = Micro(clock.GetUtcNow());
        _api.Apply(new JsonObject
        {
            ["apiVersion"] = "coordination.k8s.io/v1",
            ["kind"] = "Lease",
            ["metadata"] = new JsonObject { ["name"] = "meshproxy-ca", ["namespace"] = Ns },
            ["spec"] = new JsonObject { ["holderIdentity"] = "dead-replica", ["leaseDurationSeconds"] = 15, ["acquireTime"] = now, ["renewTime"] = now, ["leaseTransitions"] = 0 },
        }.ToJsonString());
        var starting = StartReplicaAsync("replica-a", clock);
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(_logs.WithEvent(122).Count > 0), "the replica waits for the Lease holder's root", TimeSpan.FromSeconds(20));

        // 14 s on: the dead holder's Lease still stands, so nothing is created.
        for (var i = 0; i < 14; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.False(starting.IsCompleted);
        Assert.Null(_api.Get("v1", "Secret", Ns, "meshproxy-ca"));

        // Past 15 s it is expired: taken over (a transition), the root created.
        for (var i = 0; i < 40 && !starting.IsCompleted; i++)
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }

        await using var kit = await starting.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        var lease = _api.Get("coordination.k8s.io/v1", "Lease", Ns, "meshproxy-ca")!["spec"]!;
        Assert.Equal("replica-a", lease["holderIdentity"]!.GetValue<string>());
        Assert.Equal(1, lease["leaseTransitions"]!.GetValue<int>());
        Assert.NotNull(_api.Get("v1", "Secret", Ns, "meshproxy-ca"));
        var answer = await kit.RequestAsync(await kit.OpensslCsrAsync("URI:" + Web), _api.CreateServiceAccountToken("shop", "web", pod: "web-1"));
        Assert.True(answer.Ok, answer.Details);
    }

    [Fact]
    public async Task An_istio_plugin_ca_in_cacerts_signs_with_its_intermediate_and_publishes_its_root()
    {
        var pki = new OpenSslCa(RepoPaths.NewTempDirectory(), "URI:" + Web);
        pki.MakeRoot("root", "/O=corp/CN=Corp Root");
        pki.Issue("ca", "root", IntermediateExtensions);
        ApplyPlugin(File.ReadAllText(pki.Cert("ca")), File.ReadAllText(pki.Key("ca")), File.ReadAllText(pki.Cert("root")), File.ReadAllText(pki.Cert("ca")) + File.ReadAllText(pki.Cert("root")));

        await using var kit = await StartReplicaAsync("replica-a");
        var answer = await kit.RequestAsync(await kit.OpensslCsrAsync("URI:" + Web), _api.CreateServiceAccountToken("shop", "web", pod: "web-1"));
        Assert.True(answer.Ok, answer.Details);

        // Leaf, then the intermediate (the root is not sent); the bundle is root-cert.pem alone.
        Assert.Equal(2, answer.Chain.Length);
        using var intermediate = X509Certificate2.CreateFromPem(answer.Chain[1]);
        Assert.Contains("CN=ca", intermediate.Subject, StringComparison.Ordinal);
        using var bundleRoot = X509Certificate2.CreateFromPem(Assert.Single(answer.Bundle));
        Assert.Contains("CN=Corp Root", bundleRoot.Subject, StringComparison.Ordinal);
        var verified = await CaTestKit.RunAsync("openssl", "verify", "-CAfile", pki.Cert("root"), "-untrusted", kit.Write("ca.pem", answer.Chain[1]), kit.Write("leaf.pem", answer.Chain[0]));
        Assert.Contains(": OK", verified);

        // Nothing self-managed was made: no root Secret, no Lease.
        Assert.Null(_api.Get("v1", "Secret", Ns, "meshproxy-ca"));
        Assert.DoesNotContain(_api.SecretsAndLeases, r => r.Contains("/leases", StringComparison.Ordinal) || r.StartsWith("POST", StringComparison.Ordinal));
        Assert.Contains(_logs.WithEvent(120), l => l.Contains($"Secret {Ns}/cacerts", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_broken_plugin_ca_is_refused_at_start_up_with_the_reason()
    {
        var pki = new OpenSslCa(RepoPaths.NewTempDirectory(), "URI:" + Web);
        pki.MakeRoot("root", "/O=corp/CN=Corp Root");
        pki.MakeRoot("other-root", "/O=corp/CN=Other Root");
        pki.Issue("ca", "root", IntermediateExtensions);
        pki.Issue("not-ca", "root", OpenSslCa.GoodLeafExtensions + "\nsubjectAltName = URI:" + Web);
        string Read(string name) => File.ReadAllText(pki.Cert(name));
        string Key(string name) => File.ReadAllText(pki.Key(name));

        (string Case, Action Apply, string Reason)[] cases =
        [
            ("the key belongs to another certificate", () => ApplyPlugin(Read("ca"), Key("other-root"), Read("root"), Read("ca") + Read("root")), "The provided key does not match the public key for this certificate"),
            ("the signing certificate is no CA", () => ApplyPlugin(Read("not-ca"), Key("not-ca"), Read("root"), Read("not-ca") + Read("root")), "is not a CA certificate that may sign certificates"),
            ("the chain does not reach root-cert.pem", () => ApplyPlugin(Read("ca"), Key("ca"), Read("other-root"), Read("ca")), "the signing certificate does not chain to a root in Secret meshproxy-system/cacerts"),
            ("cert-chain.pem does not begin with ca-cert.pem", () => ApplyPlugin(Read("ca"), Key("ca"), Read("root"), Read("root")), "cert-chain.pem must begin with the certificate in ca-cert.pem"),
            ("a key is missing", () => ApplyPlugin(Read("ca"), string.Empty, Read("root"), Read("ca")), "lacks ca-key.pem"),
            ("root-cert.pem is not a certificate", () => ApplyPlugin(Read("ca"), Key("ca"), "garbage", Read("ca")), "Secret meshproxy-system/cacerts"),
        ];
        foreach (var (name, apply, reason) in cases)
        {
            apply();
            var refused = await Assert.ThrowsAsync<CertificateAuthorityException>(() => StartReplicaAsync("replica-a"));
            Assert.True(refused.Message.Contains(reason, StringComparison.Ordinal), $"{name}: {refused.Message}");
        }

        // Never fell back to generating a root of its own.
        Assert.Null(_api.Get("v1", "Secret", Ns, "meshproxy-ca"));
    }

    [Fact]
    public async Task Rbac_grants_the_ca_exactly_what_it_asks_in_its_own_namespace()
    {
        // Every request the CA can make: creating the Lease and the root, renewing, reading cacerts, a rotation step.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        _api.TokenClock = clock;
        await using (var kit = await StartReplicaAsync("replica-a", clock, o => o with { RefreshInterval = TimeSpan.FromSeconds(1) }))
        {
            _api.ApplyRaw("v1", "Secret", Ns, "meshproxy-ca", s =>
            {
                s["metadata"]!["annotations"] = new JsonObject { [CaSecrets.RotateAnnotation] = "now" };
                return s;
            });
            for (var i = 0; i < 100 && _api.Get("v1", "Secret", Ns, "meshproxy-ca")!["metadata"]!["annotations"]?[CaSecrets.PhaseAnnotation] is null; i++)
            {
                clock.Advance(TimeSpan.FromSeconds(1));
                await Task.Delay(50, TestContext.Current.CancellationToken);
            }

            Assert.Equal("adding", _api.Get("v1", "Secret", Ns, "meshproxy-ca")!["metadata"]!["annotations"]![CaSecrets.PhaseAnnotation]!.GetValue<string>());
        }

        // (verb, resource, name) asked, in the control plane's namespace only.
        var asked = _api.SecretsAndLeases.Select(r =>
        {
            var (method, path) = (r.Split(' ')[0], r.Split(' ')[1].Trim('/').Split('/'));
            var at = Array.IndexOf(path, "namespaces");
            Assert.Equal(Ns, path[at + 1]);
            var (resource, name) = (path[at + 2], path.Length > at + 3 ? path[at + 3] : "*");
            var verb = method switch { "GET" => "get", "POST" => "create", "PUT" => "update", var m => m.ToLowerInvariant() };
            return $"{verb} {resource} {name}";
        }).ToHashSet();

        var rbac = new YamlStream();
        rbac.Load(new StringReader(File.ReadAllText(Path.Combine(RepoPaths.Root, "docker", "kubernetes", "rbac.yaml"))));
        var roles = rbac.Documents.Select(d => (YamlMappingNode)d.RootNode).Where(d => d["kind"].ToString() == "Role").ToList();
        var role = Assert.Single(roles);
        Assert.Equal(Ns, role["metadata"]["namespace"].ToString());
        var granted = ((YamlSequenceNode)role["rules"]).Cast<YamlMappingNode>().SelectMany(rule =>
            from resource in (YamlSequenceNode)rule["resources"]
            from verb in (YamlSequenceNode)rule["verbs"]
            from name in rule.Children.ContainsKey("resourceNames") ? ((YamlSequenceNode)rule["resourceNames"]).Select(n => n.ToString()) : ["*"]
            select $"{verb} {resource} {name}")
            // The Role also lets the control plane keep the injector's serving certificate: WebhookCertificatePublisherTests checks those.
            .Where(g => !g.EndsWith(" meshproxy-injector-tls", StringComparison.Ordinal))
            .ToHashSet();

        // A create cannot be limited by name (the name is not in the URL): granted as "*", asked as "*".
        Assert.Equal(granted.Order(StringComparer.Ordinal), asked.Order(StringComparer.Ordinal));
        var clusterRole = rbac.Documents.Select(d => (YamlMappingNode)d.RootNode).Single(d => d["kind"].ToString() == "ClusterRole");
        Assert.DoesNotContain(((YamlSequenceNode)clusterRole["rules"]).Cast<YamlMappingNode>().SelectMany(r => (YamlSequenceNode)r["resources"]), r => r.ToString() is "secrets" or "leases");
    }

    internal const string IntermediateExtensions = """
        basicConstraints = critical,CA:TRUE,pathlen:0
        keyUsage = critical,keyCertSign,cRLSign
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        """;

    internal static string Micro(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", System.Globalization.CultureInfo.InvariantCulture);

    internal static string Decode(JsonObject secret, string key) => Encoding.UTF8.GetString(Convert.FromBase64String(secret["data"]![key]!.GetValue<string>()));

    private void ApplyPlugin(string caCert, string caKey, string rootCert, string certChain)
    {
        _api.Delete("v1", "Secret", Ns, "cacerts");
        _api.Apply(PluginSecret(caCert, caKey, rootCert, certChain));
    }

    /// <summary>Secret cacerts in Istio's plug-in layout (a key left empty is left out).</summary>
    internal static string PluginSecret(string caCert, string caKey, string rootCert, string certChain)
    {
        var data = new JsonObject();
        foreach (var (key, value) in new[] { (CaSecrets.PluginCaCert, caCert), (CaSecrets.PluginCaKey, caKey), (CaSecrets.PluginRootCert, rootCert), (CaSecrets.PluginCertChain, certChain) })
        {
            if (value.Length > 0)
            {
                data[key] = Convert.ToBase64String(Encoding.UTF8.GetBytes(value));
            }
        }

        return new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Secret",
            ["type"] = "Opaque",
            ["metadata"] = new JsonObject { ["name"] = "cacerts", ["namespace"] = Ns },
            ["data"] = data,
        }.ToJsonString();
    }

    private async Task<CaTestKit> StartReplicaAsync(string identity, TimeProvider? time = null, Func<KubernetesCaOptions, KubernetesCaOptions>? tune = null)
    {
        var client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = _api.BaseUri.ToString() });
        _clients.Add(client);
        var ca = new KubernetesCaOptions { Namespace = Ns, Identity = identity };
        return await CaTestKit.StartAsync(
            o => o with { CaDirectory = null, TokenStoreFile = string.Empty, ClockSkewAllowance = TimeSpan.Zero, KubernetesCa = tune?.Invoke(ca) ?? ca },
            time: time,
            host: o => o with { Kubernetes = new KubernetesSourceOptions(), KubernetesClient = client },
            logs: _logs);
    }
}
