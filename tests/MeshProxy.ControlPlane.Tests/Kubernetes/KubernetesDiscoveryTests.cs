using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using MeshProxy.Config.Resources;
using MeshProxy.Config.Schema;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// The control plane (in process, real ports) on the fake Kubernetes API server, with a grpc-js sidecar on its
/// config stream: a Service discovered with its endpoints and their identities, scaled, rolled, the sidecar's
/// workload taken from its Pod, a malformed object skipped, and the API server going away and coming back; the
/// custom kinds (meshproxy.io, Istio's AuthorizationPolicy, GAMMA routes) served beside discovery, with their
/// statuses written back. Assertions are on what the sidecar is pushed (the grpc-js client stands for a sidecar:
/// running real sidecars in network namespaces is the data-path e2e's job).
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
        await using var sidecar = cp.ConnectWithToken(ClientToken(), "client", "shop");

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
        await using var sidecar = cp.ConnectWithToken(ClientToken(), "client", "shop");
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
        // A valid token (the config stream asks for one): what is refused is the claim, not the credential.
        var token = podIp is null ? _api.CreateServiceAccountToken("shop", workload) : _api.CreateServiceAccountToken("shop", "admin", pod: $"{workload}-grpcjs");
        await using var sidecar = cp.ConnectWithToken(token, workload, "shop");
        var error = await sidecar.NextAsync(e => e.GetProperty("type").GetString() == "error", TimeSpan.FromSeconds(30));
        Assert.Equal(code, error.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task WithTheAddressCheckOffAStreamIsResolvedByItsPodWhoseServiceAccountMustStillMatch()
    {
        // Source addresses rewritten on the way (--token-pod-address ignore): no pod's IP is the connection's.
        _api.Apply(KubeJson.Pod("shop", "admin-grpcjs", "10.9.9.9", serviceAccount: "admin"));
        _api.Apply(KubeJson.Pod("shop", "client-grpcjs", "10.9.9.8", serviceAccount: "client"));
        await using var cp = await StartControlPlaneAsync(new KubernetesSourceOptions { CheckPeerAddress = false });
        var token = _api.CreateServiceAccountToken("shop", "admin");

        await using var admin = cp.ConnectWithToken(token, "admin", "shop");
        await admin.NextSnapshotAsync(TimeSpan.FromSeconds(30));

        // The same credential naming a pod of another service account is still refused: the claim is bound to the proof.
        await using var impostor = cp.ConnectWithToken(token, "client", "shop");
        var error = await impostor.NextAsync(e => e.GetProperty("type").GetString() == "error", TimeSpan.FromSeconds(30));
        Assert.Equal(7, error.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task RbacGrantsExactlyWhatTheControlPlaneAsks()
    {
        // Every custom kind installed, one object of each: every list, watch, status patch and status read the code can make is made.
        RegisterCustomKinds();
        var objects = CustomKinds().Select(k => (k.ApiVersion, k.Kind, Name: $"any-{k.Plural}")).ToList();
        foreach (var (apiVersion, kind, name) in objects)
        {
            _api.Apply($$$"""{"apiVersion":"{{{apiVersion}}}","kind":"{{{kind}}}","metadata":{"name":"{{{name}}}","namespace":"shop"},"spec":{} }""");
        }

        // Each object's first status write crosses another writer's change (as another replica's write would): the
        // patch's resourceVersion is stale, 409 Conflict, and the status is read again before the write is retried.
        var crossed = new HashSet<string>(StringComparer.Ordinal);
        _api.BeforeRequest = line =>
        {
            var path = line.Split('?')[0];
            var written = objects.FirstOrDefault(o => line.StartsWith("PATCH ", StringComparison.Ordinal)
                && path.Contains($"/apis/{o.ApiVersion}/", StringComparison.Ordinal) && path.EndsWith($"/{o.Name}/status", StringComparison.Ordinal));
            bool first;
            lock (crossed)
            {
                first = written.Name is not null && crossed.Add(path);
            }

            if (first)
            {
                _api.Apply($$$"""{"apiVersion":"{{{written.ApiVersion}}}","kind":"{{{written.Kind}}}","metadata":{"name":"{{{written.Name}}}","namespace":"shop"},"spec":{} }""");
            }
        };

        await using (var cp = await StartControlPlaneAsync())
        {
            await using var sidecar = cp.ConnectWithToken(ClientToken(), "client", "shop");
            await sidecar.NextSnapshotAsync(TimeSpan.FromSeconds(30));
            await TestControlPlane.EventuallyAsync(
                () => Task.FromResult(objects.All(o => _api.Get(o.ApiVersion, o.Kind, "shop", o.Name)?["status"] is JsonObject)),
                "every custom object has a status", TimeSpan.FromSeconds(30));
        }

        // The trust-bundle ConfigMaps (and the namespaces that decide where they go) are written only with a CA:
        // TrustDistributionTests checks those rules against a control plane that has one. This one runs without a CA;
        // its config stream still reviews the sidecar's token (create tokenreviews).
        // The webhook's caBundle (admissionregistration.k8s.io) is checked in WebhookCertificatePublisherTests.
        var granted = RbacRules.Granted().Where(r => r.Resource is not ("configmaps" or "namespaces") && r.Group != "admissionregistration.k8s.io");

        // Exactly: nothing asked is refused, nothing granted goes unused.
        Assert.Equal(granted.Order(), RbacRules.Asked(_api.Requests).Order());
    }

    [Fact]
    public async Task CustomResourcesAndMeshRoutesAreServedBesideDiscoveryAndTheirStatusesWritten()
    {
        RegisterCustomKinds();
        _api.Apply("""
            {"apiVersion":"meshproxy.io/v1alpha1","kind":"Service","metadata":{"name":"backend-canary","namespace":"shop"},
             "spec":{"ports":[{"port":80}],"endpoints":[{"address":"10.2.0.1"}]}}
            """);
        _api.Apply(Pool("2s"));
        _api.Apply(Split(90, 10));
        _api.Apply("""
            {"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"deny-admin","namespace":"shop"},
             "spec":{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin/*"]}}]}]}}
            """);
        _api.Apply("""
            {"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"shop"},
             "spec":{"mtls":{"mode":"STRICT"}}}
            """);
        _api.Apply("""
            {"apiVersion":"security.istio.io/v1","kind":"RequestAuthentication","metadata":{"name":"jwt","namespace":"shop"},
             "spec":{"selector":{"matchLabels":{"app":"backend"}},"jwtRules":[{"issuer":"https://issuer.example","jwksUri":"https://issuer.example/jwks"}]}}
            """);

        await using var cp = await StartControlPlaneAsync();
        await using var sidecar = cp.ConnectWithToken(ClientToken(), "client", "shop");

        // The GAMMA route on the discovered Service, to it and to a meshproxy.io Service; Istio's policy; our policy.
        var first = await sidecar.NextSnapshotAsync(TimeSpan.FromSeconds(30));
        Assert.Equal([90, 10], Weights(first));
        Assert.Contains(Resources(first), r => r.GetProperty("kind").GetString() == "AuthorizationPolicy" && r.GetProperty("name").GetString() == "deny-admin.istio");
        Assert.Contains(Resources(first), r => r.GetProperty("kind").GetString() == "PeerAuthentication" && r.GetProperty("name").GetString() == "default.istio");
        var pool = Resources(first).Single(r => r.GetProperty("name").GetString() == "backend-pool");
        await sidecar.SendAsync("ack");

        // Statuses: accepted, applied by the one sidecar that ACKed; the route's Service parent Accepted and resolved.
        await EventuallyAsync(() => Condition("DestinationPolicy", "backend-pool") is ("True", "Accepted", _) && Sidecars("DestinationPolicy", "backend-pool") == (1, 0),
            "the policy's status says Accepted, applied by one sidecar");
        await EventuallyAsync(() => Condition("AuthorizationPolicy", "deny-admin", "security.istio.io/v1") is ("True", "Accepted", _), "Istio's policy's status says Accepted");
        await EventuallyAsync(() => Condition("PeerAuthentication", "default", "security.istio.io/v1") is ("True", "Accepted", _)
            && Condition("RequestAuthentication", "jwt", "security.istio.io/v1") is ("True", "Accepted", _), "Istio's PeerAuthentication and RequestAuthentication say Accepted");
        await EventuallyAsync(() => RouteParents() is ["backend meshproxy.io/controlplane Accepted:True ResolvedRefs:True"], "the route's status for its Service parent");

        // An HTTPRoute moves traffic: the new weights are pushed.
        _api.Apply(Split(0, 100));
        await sidecar.NextAsync(e => e.GetProperty("type").GetString() == "snapshot" && Weights(e).SequenceEqual([0, 100]), TimeSpan.FromSeconds(30));
        await sidecar.SendAsync("ack");

        // A bad edit: Invalid (field: reason) in its status, its last good version keeps serving, and other changes keep flowing.
        _api.Apply(Pool("soon"));
        Pod("b3", "10.1.0.3");
        Slice(("10.1.0.1", "b1", true, true, false), ("10.1.0.2", "b2", true, true, false), ("10.1.0.3", "b3", true, true, false));
        var next = await NextWithAsync(sidecar, ["10.1.0.1 backend", "10.1.0.2 backend", "10.1.0.3 backend"]);
        Assert.Equal(pool.GetProperty("version").GetString(), Resources(next).Single(r => r.GetProperty("name").GetString() == "backend-pool").GetProperty("version").GetString());
        await EventuallyAsync(() => Condition("DestinationPolicy", "backend-pool") is ("False", "Invalid", var m)
            && m.StartsWith("spec.connectionPool.tcp.connectTimeout: 'soon' is not a duration", StringComparison.Ordinal)
            && m.EndsWith("its last accepted version keeps serving", StringComparison.Ordinal), "the bad edit shows Invalid with field and reason");
        Assert.Contains("DestinationPolicy/shop/backend-pool", (await cp.ConfigzAsync()).GetProperty("keptLastGood").EnumerateArray().Select(k => k.GetString()));

        // A sidecar's NACK naming a resource is counted on it. The pause lets the status passes that follow the bad edit
        // (its status write is a watch event, so a rebuild) run out first: then only the NACK itself can get the count
        // written, which is what this checks. It only makes the check sharper; the test does not rely on its length.
        await Task.Delay(TimeSpan.FromSeconds(3), TestContext.Current.CancellationToken);
        await sidecar.SendAsync("nack DestinationPolicy/shop/backend-pool:3: refused by this sidecar");
        await EventuallyAsync(() => Sidecars("DestinationPolicy", "backend-pool") == (0, 1), "the NACK is counted in the policy's status");

        static string Pool(string timeout) => $$"""
            {"apiVersion":"meshproxy.io/v1alpha1","kind":"DestinationPolicy","metadata":{"name":"backend-pool","namespace":"shop"},
             "spec":{"host":"backend","connectionPool":{"tcp":{"connectTimeout":"{{timeout}}"} } } }
            """;

        static string Split(int stable, int canary) => $$"""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"split","namespace":"shop"},
             "spec":{"parentRefs":[{"group":"","kind":"Service","name":"backend"}],
                     "rules":[{"backendRefs":[{"name":"backend","port":80,"weight":{{stable}}},{"name":"backend-canary","port":80,"weight":{{canary}} }]}]} }
            """;
    }

    [Fact]
    public async Task OneKeyIsServedFromOnePlaceTheDirectoryOverACustomResourceOverDiscovery()
    {
        RegisterCustomKinds();
        var directory = RepoPaths.NewTempDirectory();
        await using var cp = await TestControlPlane.StartAsync(directory, configure: o => o with { Kubernetes = new KubernetesSourceOptions(), KubernetesClient = _client });
        await using var sidecar = cp.ConnectWithToken(ClientToken(), "client", "shop");
        Assert.Equal(["10.1.0.1 backend", "10.1.0.2 backend"], Endpoints(await sidecar.NextSnapshotAsync(TimeSpan.FromSeconds(30))));

        // A meshproxy.io Service of the same name takes over from the discovered one...
        _api.Apply("""
            {"apiVersion":"meshproxy.io/v1alpha1","kind":"Service","metadata":{"name":"backend","namespace":"shop"},
             "spec":{"ports":[{"port":80}],"endpoints":[{"address":"10.3.0.1"}]}}
            """);
        await NextWithAsync(sidecar, ["10.3.0.1 "]);

        // ...and the directory's over both.
        Yaml.Write(directory, "backend.yaml", """
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: backend, namespace: shop }
            spec:
              ports: [{ port: 80 }]
              endpoints: [{ address: 10.4.0.1 }]

            """);
        await NextWithAsync(sidecar, ["10.4.0.1 "]);

        // Each gone, the next in line serves again.
        File.Delete(Path.Combine(directory, "backend.yaml"));
        await NextWithAsync(sidecar, ["10.3.0.1 "]);
        _api.Delete("meshproxy.io/v1alpha1", "Service", "shop", "backend");
        await NextWithAsync(sidecar, ["10.1.0.1 backend", "10.1.0.2 backend"]);
    }

    [Fact]
    public async Task AnAbsentCustomResourceDefinitionDoesNotBlockTheStartAndIsPickedUpOnceInstalled()
    {
        // No custom kind installed: every custom list answers 404, and the control plane starts on discovery alone.
        // A generous bound, so that a start blocked on the absent kinds fails here rather than hanging the run.
        await using var cp = await StartControlPlaneAsync(new KubernetesSourceOptions { Informers = new() { MaxBackoff = TimeSpan.FromSeconds(2) } })
            .WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
        await using var sidecar = cp.ConnectWithToken(ClientToken(), "client", "shop");
        await sidecar.NextSnapshotAsync(TimeSpan.FromSeconds(30));
        Assert.Contains("kubernetes httproutes.gateway.networking.k8s.io: not served by the API server", (await ReadyAsync(cp)).Body);
        Assert.Contains("meshproxy_controlplane_kubernetes_kind_served{resource=\"httproutes.gateway.networking.k8s.io\"} 0", await cp.MetricsAsync());

        RegisterCustomKinds();
        _api.Apply("""
            {"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"deny-admin","namespace":"shop"},
             "spec":{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin/*"]}}]}]}}
            """);
        await sidecar.NextAsync(e => e.GetProperty("type").GetString() == "snapshot" && Resources(e).Any(r => r.GetProperty("name").GetString() == "deny-admin.istio"), TimeSpan.FromSeconds(30));
        await TestControlPlane.EventuallyAsync(async () => !(await ReadyAsync(cp)).Body.Contains("not served", StringComparison.Ordinal), "/ready says every kind is watched", TimeSpan.FromSeconds(30));
    }

    private void RegisterCustomKinds()
    {
        foreach (var kind in CustomKinds())
        {
            _api.RegisterResource(kind.ApiVersion.Contains('/', StringComparison.Ordinal) ? kind.ApiVersion.Split('/')[0] : string.Empty, kind.ApiVersion.Split('/')[^1], kind.Plural, kind.Kind, namespaced: true);
        }
    }

    private static IEnumerable<(string ApiVersion, string Kind, string Plural)> CustomKinds() =>
        ResourceSchemas.All.Select(k => ($"{ResourceSchemas.Group}/{ResourceSchemas.Version}", k.Kind, k.Plural))
            .Append(("security.istio.io/v1", "AuthorizationPolicy", "authorizationpolicies"))
            .Append(("security.istio.io/v1", "PeerAuthentication", "peerauthentications"))
            .Append(("security.istio.io/v1", "RequestAuthentication", "requestauthentications"))
            .Append(("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"))
            .Append(("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes"));

    /// <summary>The Accepted condition of a custom object's status as (status, reason, message), or nulls while it has none.</summary>
    private (string?, string?, string) Condition(string kind, string name, string apiVersion = "meshproxy.io/v1alpha1")
    {
        var condition = _api.Get(apiVersion, kind, "shop", name)?["status"]?["conditions"]?.AsArray().FirstOrDefault(c => (string?)c!["type"] == "Accepted");
        return ((string?)condition?["status"], (string?)condition?["reason"], (string?)condition?["message"] ?? string.Empty);
    }

    private (int Applied, int Nacked)? Sidecars(string kind, string name) =>
        _api.Get("meshproxy.io/v1alpha1", kind, "shop", name)?["status"]?["sidecars"] is JsonObject s ? ((int)s["applied"]!, (int)s["nacked"]!) : null;

    /// <summary>"parent controller Type:Status..." of each entry of the HTTPRoute's status.parents.</summary>
    private string[] RouteParents() =>
        [.. (_api.Get("gateway.networking.k8s.io/v1", "HTTPRoute", "shop", "split")?["status"]?["parents"]?.AsArray() ?? []).Select(p =>
            $"{p!["parentRef"]!["name"]} {p["controllerName"]} " + string.Join(' ', p["conditions"]!.AsArray().Select(c => $"{c!["type"]}:{c["status"]}")))];

    /// <summary>The weights of the first rule of the HttpRoute made from the GAMMA routes of the backend Service, as the sidecar's parser reads it.</summary>
    private static int[] Weights(JsonElement snapshot)
    {
        var route = Resources(snapshot).Single(r => r.GetProperty("kind").GetString() == "HttpRoute" && r.GetProperty("name").GetString() == "backend.gateway-api");
        var parsed = MeshProxy.Config.Parsing.ResourceParser.ParseText(route.GetProperty("yaml").GetString()!, "pushed");
        return [.. parsed.OfKind<HttpRouteResource>().Single().Spec.Http[0].Route.Select(d => d.Weight)];
    }

    /// <summary>The projected token of the grpc-js sidecar's pod (client-grpcjs, service account client-sa).</summary>
    private string ClientToken() => _api.CreateServiceAccountToken("shop", "client-sa", pod: "client-grpcjs");

    private static Task EventuallyAsync(Func<bool> condition, string what) =>
        TestControlPlane.EventuallyAsync(() => Task.FromResult(condition()), what, TimeSpan.FromSeconds(30));

    private async Task<TestControlPlane> StartControlPlaneAsync(KubernetesSourceOptions? kubernetes = null) =>
        await TestControlPlane.StartAsync(configure: o => o with
        {
            ConfigDirectory = string.Empty,
            Kubernetes = kubernetes ?? new KubernetesSourceOptions(),
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
