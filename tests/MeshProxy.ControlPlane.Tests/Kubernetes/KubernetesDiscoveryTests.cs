using System.Net;
using System.Text.Json;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// The control plane (in process, real ports) on the fake Kubernetes API server, with a grpc-js sidecar on its
/// config stream: a Service discovered with its endpoints and their identities, scaled, rolled, the sidecar's
/// workload taken from its Pod, a malformed object skipped, and the API server going away and coming back.
/// </summary>
public sealed class KubernetesDiscoveryTests : IAsyncLifetime
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private FakeKubernetesApiServer _api = null!;
    private k8s.Kubernetes _client = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApiServer.StartAsync();
        _client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = _api.BaseUri.ToString() });
        _api.Apply(KubeJson.Namespace("shop"));
        // The grpc-js peer says it is instance "client-grpcjs.shop" (pod "client-grpcjs" in "shop", as a sidecar names
        // itself), of workload "client" with service account "client".
        _api.Apply(KubeJson.Pod("shop", "client-grpcjs", "127.0.0.1", serviceAccount: "client-sa", app: "client"));
        _api.Apply(KubeJson.Service("shop", "backend", clusterIp: "10.96.0.20"));
        Pod("b1", "10.1.0.1");
        Pod("b2", "10.1.0.2");
        Slice(("10.1.0.1", "b1", true, true, false), ("10.1.0.2", "b2", true, true, false));
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task DiscoversScalesAndRollsAServiceAndSurvivesTheApiServerGoingAway()
    {
        await using var cp = await StartControlPlaneAsync();
        await using var sidecar = cp.Connect("client", "shop");

        var first = await sidecar.NextSnapshotAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(["10.1.0.1 backend", "10.1.0.2 backend"], Endpoints(first));
        var yaml = Backend(first).GetProperty("yaml").GetString()!;
        Assert.Contains("\"backend.shop.svc.cluster.local\"", yaml);
        Assert.Contains("\"10.96.0.20\"", yaml);
        await sidecar.SendAsync("ack");

        // Its workload is its Pod's: service account and labels from the API, not the Node's claims.
        await TestControlPlane.EventuallyAsync(async () =>
            (await cp.SynczAsync()).EnumerateArray().Any(s => s.GetProperty("serviceAccount").GetString() == "client-sa"), "syncz shows the Pod's service account");

        // Scale up.
        Pod("b3", "10.1.0.3");
        Slice(("10.1.0.1", "b1", true, true, false), ("10.1.0.2", "b2", true, true, false), ("10.1.0.3", "b3", true, true, false));
        Assert.Equal(["10.1.0.1 backend", "10.1.0.2 backend", "10.1.0.3 backend"], Endpoints(await sidecar.NextSnapshotAsync(TimeSpan.FromSeconds(30))));

        // A rolling step: b1 terminating (still serving) gets no new requests; b4 comes up.
        Pod("b4", "10.1.0.4");
        Slice(("10.1.0.1", "b1", false, true, true), ("10.1.0.2", "b2", true, true, false), ("10.1.0.3", "b3", true, true, false), ("10.1.0.4", "b4", true, true, false));
        await NextWithAsync(sidecar, ["10.1.0.2 backend", "10.1.0.3 backend", "10.1.0.4 backend"]);

        // The API server goes away: still ready, saying so; nothing withdrawn.
        _api.SetReachable(false);
        await TestControlPlane.EventuallyAsync(async () => (await ReadyAsync(cp)).Body.Contains("unreachable", StringComparison.Ordinal), "/ready says the API server is unreachable");
        var (status, body) = await ReadyAsync(cp);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("serving the last known state", body);
        Assert.Contains("meshproxy_controlplane_kubernetes_connected{resource=\"services\"} 0", await cp.MetricsAsync());
        Assert.False(await sidecar.ReceivesWithinAsync(e => e.GetProperty("type").GetString() == "snapshot", TimeSpan.FromSeconds(2)));

        // Meanwhile the scale-down happens and history is compacted: on return the informers relist.
        Slice(("10.1.0.2", "b2", true, true, false), ("10.1.0.4", "b4", true, true, false));
        _api.Delete("v1", "Pod", "shop", "b1");
        _api.Delete("v1", "Pod", "shop", "b3");
        _api.Compact();
        _api.SetReachable(true);
        await NextWithAsync(sidecar, ["10.1.0.2 backend", "10.1.0.4 backend"]);
        await TestControlPlane.EventuallyAsync(async () => !(await ReadyAsync(cp)).Body.Contains("unreachable", StringComparison.Ordinal), "/ready says watching again");
        Assert.Contains("meshproxy_controlplane_kubernetes_relists{resource=\"endpointslices.discovery.k8s.io\"} 1", await cp.MetricsAsync());
    }

    [Fact]
    public async Task AServiceThatCannotBeTranslatedIsSkippedAndKeepsItsLastGoodVersion()
    {
        _api.Apply("""
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"payments","namespace":"shop"},
             "spec":{"type":"ExternalName","externalName":"api.payments.example","ports":[{"name":"https","port":443}]}}
            """);
        await using var cp = await StartControlPlaneAsync();
        await using var sidecar = cp.Connect("client", "shop");
        var first = await sidecar.NextSnapshotAsync(TimeSpan.FromSeconds(30));
        Assert.Contains(Resources(first), r => r.GetProperty("name").GetString() == "payments");

        // An external name no DNS would take (the API server checks it; a fake one lets it through).
        _api.ApplyRaw("v1", "Service", "shop", "payments", o =>
        {
            o["spec"]!["externalName"] = "not a host!";
            return o;
        });
        Pod("b3", "10.1.0.3");
        Slice(("10.1.0.1", "b1", true, true, false), ("10.1.0.2", "b2", true, true, false), ("10.1.0.3", "b3", true, true, false));

        var next = await NextWithAsync(sidecar, ["10.1.0.1 backend", "10.1.0.2 backend", "10.1.0.3 backend"]);
        var payments = Resources(next).Single(r => r.GetProperty("name").GetString() == "payments");
        Assert.Contains("api.payments.example", payments.GetProperty("yaml").GetString());
        var configz = await cp.ConfigzAsync();
        Assert.Contains(configz.GetProperty("errors").EnumerateArray(), e => e.GetProperty("file").GetString() == "kubernetes:services/shop/payments");
        Assert.Contains("Service/shop/payments", configz.GetProperty("keptLastGood").EnumerateArray().Select(k => k.GetString()));
    }

    [Theory]
    [InlineData("intruder", "10.9.9.9", 7)] // the Pod exists but the connection is not from its IP: PERMISSION_DENIED
    [InlineData("nobody", null, 14)] // no such Pod (yet): UNAVAILABLE, the sidecar retries
    public async Task ASidecarIsWhoItsPodSaysOrItIsRefused(string workload, string? podIp, int code)
    {
        if (podIp is not null)
        {
            _api.Apply(KubeJson.Pod("shop", $"{workload}-grpcjs", podIp, serviceAccount: "admin"));
        }

        await using var cp = await StartControlPlaneAsync();
        await using var sidecar = cp.Connect(workload, "shop");
        var error = await sidecar.NextAsync(e => e.GetProperty("type").GetString() == "error", TimeSpan.FromSeconds(30));
        Assert.Equal(code, error.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task RbacGrantsExactlyWhatTheControlPlaneAsks()
    {
        await using (var cp = await StartControlPlaneAsync())
        {
            await using var sidecar = cp.Connect("client", "shop");
            await sidecar.NextSnapshotAsync(TimeSpan.FromSeconds(30));
        }

        // (group, resource, verb) of every request the control plane made to the API server.
        var asked = _api.Requests.Select(r =>
        {
            var (method, target) = (r.Split(' ')[0], r.Split(' ')[1]);
            var path = target.Split('?')[0].Trim('/').Split('/');
            var (group, rest) = path[0] == "api" ? ("", path[2..]) : (path[1], path[3..]);
            var resource = rest is ["namespaces", _, var plural, ..] ? plural : rest[0];
            var verb = method switch
            {
                "GET" when target.Contains("watch=true", StringComparison.Ordinal) => "watch",
                "GET" when rest.Length % 2 == 1 => "list",
                "GET" => "get",
                var m => m.ToLowerInvariant(),
            };
            return (group, resource, verb);
        }).ToHashSet();

        var rbac = new YamlDotNet.RepresentationModel.YamlStream();
        rbac.Load(new StringReader(File.ReadAllText(Path.Combine(RepoPaths.Root, "docker", "kubernetes", "rbac.yaml"))));
        var granted = rbac.Documents
            .Select(d => (YamlDotNet.RepresentationModel.YamlMappingNode)d.RootNode)
            .Where(d => d.Children[new YamlDotNet.RepresentationModel.YamlScalarNode("kind")].ToString() == "ClusterRole")
            .SelectMany(d => ((YamlDotNet.RepresentationModel.YamlSequenceNode)d.Children[new YamlDotNet.RepresentationModel.YamlScalarNode("rules")]).Children)
            .Cast<YamlDotNet.RepresentationModel.YamlMappingNode>()
            .SelectMany(rule =>
                from g in Strings(rule, "apiGroups")
                from res in Strings(rule, "resources")
                from v in Strings(rule, "verbs")
                select (g, res, v))
            .ToHashSet();

        Assert.Subset(granted, asked);
        // The core and discovery rules are this source's (other groups belong to the CRD and Gateway API watches).
        Assert.Equal(
            asked.OrderBy(a => a.ToString()),
            granted.Where(g => g.g is "" or "discovery.k8s.io").OrderBy(g => g.ToString()));

        static IEnumerable<string> Strings(YamlDotNet.RepresentationModel.YamlMappingNode rule, string key) =>
            ((YamlDotNet.RepresentationModel.YamlSequenceNode)rule.Children[new YamlDotNet.RepresentationModel.YamlScalarNode(key)]).Children.Select(c => c.ToString());
    }

    private async Task<TestControlPlane> StartControlPlaneAsync() =>
        await TestControlPlane.StartAsync(configure: o => o with
        {
            ConfigDirectory = string.Empty,
            Kubernetes = new KubernetesSourceOptions(),
            KubernetesClient = _client,
        });

    private void Pod(string name, string ip) => _api.Apply(KubeJson.Pod("shop", name, ip, serviceAccount: "backend", app: "backend"));

    private void Slice(params (string Ip, string Pod, bool Ready, bool Serving, bool Terminating)[] endpoints) =>
        _api.Apply(KubeJson.EndpointSlice("shop", "backend-abc12", "backend", 8080, endpoints));

    private static async Task<JsonElement> NextWithAsync(NodePeer sidecar, string[] endpoints) =>
        await sidecar.NextAsync(e => e.GetProperty("type").GetString() == "snapshot" && Endpoints(e).SequenceEqual(endpoints), TimeSpan.FromSeconds(30));

    private static List<JsonElement> Resources(JsonElement snapshot) => [.. snapshot.GetProperty("resources").EnumerateArray()];

    private static JsonElement Backend(JsonElement snapshot) =>
        Resources(snapshot).Single(r => r.GetProperty("kind").GetString() == "Service" && r.GetProperty("name").GetString() == "backend");

    /// <summary>"address serviceAccount" of each endpoint of the backend Service, as the sidecar's parser reads its YAML.</summary>
    private static List<string> Endpoints(JsonElement snapshot)
    {
        var parsed = MeshProxy.Config.Parsing.ResourceParser.ParseText(Backend(snapshot).GetProperty("yaml").GetString()!, "pushed");
        return [.. parsed.OfKind<MeshProxy.Config.Resources.ServiceResource>().Single().Spec.Endpoints.Select(e => $"{e.Address} {e.ServiceAccount}")];
    }

    private static async Task<(HttpStatusCode Status, string Body)> ReadyAsync(TestControlPlane cp)
    {
        using var response = await Http.GetAsync(new Uri(cp.MonitoringUri, "/ready"));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }
}
