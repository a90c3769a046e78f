using System.Text.Json.Nodes;
using k8s;
using MeshProxy.Config.Resources;
using MeshProxy.Config.Schema;
using MeshProxy.ControlPlane.Kubernetes.CustomResources;
using MeshProxy.ControlPlane.Kubernetes.Informers;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.CustomResources;

/// <summary>The custom kinds read from the fake API server and their statuses written back through the status subresource.</summary>
public sealed class CustomResourceSourceTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 7, 6, 0, 0, TimeSpan.Zero));
    private readonly CancellationTokenSource _stop = new();
    private FakeKubernetesApiServer _server = null!;
    private k8s.Kubernetes _client = null!;

    public async ValueTask InitializeAsync()
    {
        _server = await FakeKubernetesApiServer.StartAsync();
        _client = new k8s.Kubernetes(new KubernetesClientConfiguration { Host = _server.BaseUri.ToString() });
        foreach (var kind in ResourceSchemas.All)
        {
            _server.RegisterResource(ResourceSchemas.Group, ResourceSchemas.Version, kind.Plural, kind.Kind, namespaced: true);
        }

        _server.RegisterResource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", namespaced: true);
        _server.RegisterResource("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute", namespaced: true);
        // Istio's CRD is not installed: its list answers 404 until the test registers it.
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _client.Dispose();
        await _server.DisposeAsync();
        _stop.Dispose();
    }

    private static string MeshService(string name, int port) => $$$"""
        {"apiVersion":"meshproxy.io/v1alpha1","kind":"Service","metadata":{"name":"{{{name}}}","namespace":"shop"},
         "spec":{"ports":[{"port":{{{port}}}}],"endpoints":[{"address":"10.0.0.{{{port % 200}}}"}]}}
        """;

    [Fact]
    public async Task Objects_become_served_resources_a_bad_one_shows_Invalid_in_its_status_and_an_HTTPRoute_gets_per_parent_status()
    {
        _server.Apply(MeshService("reviews", 80));
        _server.Apply(MeshService("reviews-v1", 81));
        _server.Apply(MeshService("reviews-v2", 82));
        _server.Apply("""
            {"apiVersion":"meshproxy.io/v1alpha1","kind":"DestinationPolicy","metadata":{"name":"broken","namespace":"shop"},
             "spec":{"host":"reviews","connectionPool":{"tcp":{"connectTimeout":"soon"}}}}
            """);
        _server.Apply("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"split","namespace":"shop"},
             "spec":{"parentRefs":[{"group":"","kind":"Service","name":"reviews"},{"name":"some-gateway"}],
                     "rules":[{"backendRefs":[{"name":"reviews-v1","port":81,"weight":90},{"name":"reviews-v2","port":82,"weight":10}]}]}}
            """);

        var source = new CustomResourceSource(_client, new InformerOptions(), _time, NullLogger.Instance);
        _ = Task.Run(() => source.RunAsync(_stop.Token), TestContext.Current.CancellationToken);
        await EventuallyAsync(() => source.Read([], []).Resources.Count == 4, "three Services and the HTTPRoute's HttpRoute served");

        var snapshot = source.Read([], []);
        var route = Assert.IsType<HttpRouteResource>(snapshot.Resources.Single(r => r.Key == "HttpRoute/shop/reviews.gateway-api").Resource);
        Assert.Equal([90, 10], route.Spec.Http[0].Route.Select(d => d.Weight));
        Assert.DoesNotContain(snapshot.Resources, r => r.Key.Contains("broken", StringComparison.Ordinal));

        var state = new PushGate().Apply(ConfigState.Empty with { Generation = 1, Resources = snapshot.Resources });
        var writer = new StatusWriter(_client, _time, NullLogger.Instance);
        await writer.WriteAsync(snapshot, state, new Dictionary<string, SidecarCounts> { ["Service/shop/reviews"] = new(2, 0) }, TestContext.Current.CancellationToken);

        var broken = Accepted(_server.Get("meshproxy.io/v1alpha1", "DestinationPolicy", "shop", "broken")!);
        Assert.Equal(("False", "Invalid"), ((string?)broken["status"], (string?)broken["reason"]));
        Assert.StartsWith("spec.connectionPool.tcp.connectTimeout: 'soon' is not a duration", (string?)broken["message"], StringComparison.Ordinal);

        var reviews = _server.Get("meshproxy.io/v1alpha1", "Service", "shop", "reviews")!;
        Assert.Equal(("True", "Accepted"), ((string?)Accepted(reviews)["status"], (string?)Accepted(reviews)["reason"]));
        Assert.Equal(2, (int)reviews["status"]!["sidecars"]!["applied"]!);
        Assert.Equal((long)reviews["metadata"]!["generation"]!, (long)reviews["status"]!["observedGeneration"]!);

        var parents = _server.Get("gateway.networking.k8s.io/v1", "HTTPRoute", "shop", "split")!["status"]!["parents"]!.AsArray();
        var parent = Assert.Single(parents); // the Gateway parent is another controller's
        Assert.Equal("meshproxy.io/controlplane", (string?)parent!["controllerName"]);
        Assert.Equal("reviews", (string?)parent["parentRef"]!["name"]);
        Assert.Equal(["Accepted:True:Accepted", "ResolvedRefs:True:ResolvedRefs"],
            parent["conditions"]!.AsArray().Select(c => $"{c!["type"]}:{c["status"]}:{c["reason"]}"));

        // Nothing changed: nothing is written again (informers see the status writes first).
        await EventuallyAsync(() => source.Read([], []).Objects.All(o => o.Object.Status.ValueKind == System.Text.Json.JsonValueKind.Object)
            && source.Read([], []).Routes.All(r => r.Route.Status.ValueKind == System.Text.Json.JsonValueKind.Object), "the informers saw the statuses");
        var patches = _server.Requests.Count(r => r.StartsWith("PATCH", StringComparison.Ordinal));
        await writer.WriteAsync(source.Read([], []), state, new Dictionary<string, SidecarCounts> { ["Service/shop/reviews"] = new(2, 0) }, TestContext.Current.CancellationToken);
        Assert.Equal(patches, _server.Requests.Count(r => r.StartsWith("PATCH", StringComparison.Ordinal)));

        // Only what the RBAC rules grant (CustomResourceRbacTests): lists and watches, and reads and patches of /status.
        var calls = _server.Requests.Where(r => r.Contains("/apis/", StringComparison.Ordinal)).ToList();
        Assert.All(calls, r => Assert.True(
            (r.StartsWith("GET ", StringComparison.Ordinal) && !r.Contains("/namespaces/", StringComparison.Ordinal)) ||
            (r.StartsWith("GET ", StringComparison.Ordinal) && r.Split('?')[0].EndsWith("/status", StringComparison.Ordinal)) ||
            (r.StartsWith("PATCH ", StringComparison.Ordinal) && r.Split('?')[0].EndsWith("/status", StringComparison.Ordinal)), r));
    }

    [Fact]
    public async Task A_kind_whose_CRD_is_not_installed_is_not_watched_until_it_is_and_the_others_are_read_meanwhile()
    {
        _server.Apply(MeshService("reviews", 80));
        var source = new CustomResourceSource(_client, new InformerOptions { InitialBackoff = TimeSpan.FromSeconds(1) }, _time, NullLogger.Instance);
        _ = Task.Run(() => source.RunAsync(_stop.Token), TestContext.Current.CancellationToken);
        await EventuallyAsync(() => source.Read([], []).Resources.Count == 1, "the meshproxy.io Service is read while Istio's kind is missing");
        // The absent kind counts as listed and empty (the Kubernetes source's first state waits for every Synced), and says why.
        // Its 404 may be answered after the meshproxy.io kinds are read: wait for it, never for a time.
        var istio = source.Informers.Single(i => i.Resource == "authorizationpolicies.security.istio.io");
        await EventuallyAsync(() => istio.Synced.IsCompletedSuccessfully && istio.Health is { NotServed: true, Connected: true }, "Istio's kind listed as not served");
        Assert.Contains(_server.Requests, r => r.Contains("/apis/security.istio.io/v1/authorizationpolicies", StringComparison.Ordinal));

        _server.RegisterResource("security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy", namespaced: true);
        _server.Apply("""
            {"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"deny-admin","namespace":"shop"},
             "spec":{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin/*"]}}]}]}}
            """);

        await EventuallyAsync(() =>
        {
            _time.Advance(TimeSpan.FromSeconds(5)); // the 404'd list is retried after its backoff
            return source.Read([], []).Resources.Any(r => r.Key == "AuthorizationPolicy/shop/deny-admin.istio");
        }, "the Istio policy is read once its CRD exists");
        Assert.False(istio.Health.NotServed);
    }

    [Fact]
    public async Task Status_writes_that_fail_are_tried_again_after_a_backoff_and_the_loop_goes_on()
    {
        var source = await StartWithOneServiceAsync();

        var refuse = true;
        _server.BeforeRequest = r =>
        {
            if (Volatile.Read(ref refuse) && r.StartsWith("PATCH", StringComparison.Ordinal))
            {
                throw new InvalidOperationException("the fake API server refuses this write (test)"); // answered 500
            }
        };
        var state = new PushGate().Apply(ConfigState.Empty with { Generation = 1, Resources = source.Read([], []).Resources });
        using var logs = new LogCapture();
        await using var publisher = new StatusPublisher(
            new StatusWriter(_client, _time, NullLogger.Instance),
            () => new StatusInputs(source.Read([], []), state, new Dictionary<string, SidecarCounts>()),
            TimeSpan.FromMilliseconds(500),
            _time,
            logs.CreateLogger("status"));
        int Patches() => _server.Requests.Count(r => r.StartsWith("PATCH", StringComparison.Ordinal));

        publisher.Schedule();
        _time.Advance(TimeSpan.FromMilliseconds(500));
        await EventuallyAsync(() => Patches() == 1, "the first write is tried, and refused");
        // The refusal reaches the publisher after the server counted the PATCH: the clock moves only once the retry is set.
        await EventuallyAsync(() => logs.WithEvent(192).Count == 1, "the publisher set its retry");

        // Nothing is tried again before the backoff (1 s after the first failed pass)...
        Volatile.Write(ref refuse, false);
        _time.Advance(TimeSpan.FromMilliseconds(900));
        await Task.Delay(TimeSpan.FromMilliseconds(300), TestContext.Current.CancellationToken);
        Assert.Equal(1, Patches());
        Assert.Null(_server.Get("meshproxy.io/v1alpha1", "Service", "shop", "reviews")!["status"]);

        // ...and then it is, and succeeds.
        _time.Advance(TimeSpan.FromMilliseconds(100));
        await EventuallyAsync(() => _server.Get("meshproxy.io/v1alpha1", "Service", "shop", "reviews")!["status"] is JsonObject, "the write is tried again and lands");
        Assert.Equal(2, Patches());
    }

    [Fact]
    public async Task Two_replicas_each_write_their_own_count_the_status_shows_the_sum_and_a_dead_replicas_count_leaves_it()
    {
        var source = await StartWithOneServiceAsync();
        var state = new PushGate().Apply(ConfigState.Empty with { Generation = 1, Resources = source.Read([], []).Resources });
        var alive = new HashSet<string>(["cp-a", "cp-b"]);
        var a = new StatusWriter(_client, _time, NullLogger.Instance, new ReplicaView("cp-a", alive.Contains));
        var b = new StatusWriter(_client, _time, NullLogger.Instance, new ReplicaView("cp-b", alive.Contains));
        var (countsA, countsB) = (Counts(2, 1), Counts(3, 0));
        int Patches() => _server.Requests.Count(r => r.StartsWith("PATCH", StringComparison.Ordinal));
        JsonNode Sidecars() => _server.Get("meshproxy.io/v1alpha1", "Service", "shop", "reviews")!["status"]!["sidecars"]!;
        async Task SeenAsync()
        {
            var rv = (string?)_server.Get("meshproxy.io/v1alpha1", "Service", "shop", "reviews")!["metadata"]!["resourceVersion"];
            await EventuallyAsync(() => source.Read([], []).Objects.Single().Object.Metadata.ResourceVersion == rv, "the informer saw the write");
        }

        await a.WriteAsync(source.Read([], []), state, countsA, TestContext.Current.CancellationToken);
        await SeenAsync();
        await b.WriteAsync(source.Read([], []), state, countsB, TestContext.Current.CancellationToken);
        await SeenAsync();
        Assert.Equal((5, 1), ((int)Sidecars()["applied"]!, (int)Sidecars()["nacked"]!));
        Assert.Equal("""{"cp-a":{"applied":2,"nacked":1},"cp-b":{"applied":3,"nacked":0}}""", Sidecars()["replicas"]!.ToJsonString());

        // Each replica's next pass (the other's write is an event for it): the sum already stands, nothing is written.
        var before = Patches();
        await a.WriteAsync(source.Read([], []), state, countsA, TestContext.Current.CancellationToken);
        await b.WriteAsync(source.Read([], []), state, countsB, TestContext.Current.CancellationToken);
        Assert.Equal(before, Patches());

        // A writes from a view older than B's write (its informer lags): the resourceVersion it read is refused (409),
        // it reads the status again and writes its new count beside B's instead of over it.
        var stale = source.Read([], []);
        await b.WriteAsync(stale, state, Counts(4, 0), TestContext.Current.CancellationToken);
        await a.WriteAsync(stale, state, Counts(1, 0), TestContext.Current.CancellationToken);
        Assert.Contains(_server.Requests, r => r.StartsWith("GET ", StringComparison.Ordinal) && r.Split('?')[0].EndsWith("/services/reviews/status", StringComparison.Ordinal));
        Assert.Equal((5, 0), ((int)Sidecars()["applied"]!, (int)Sidecars()["nacked"]!));
        await SeenAsync();

        // B's pod dies: A's next pass drops B's entry (merge patch: named with null) and the sum is A's alone.
        alive.Remove("cp-b");
        await a.WriteAsync(source.Read([], []), state, Counts(1, 0), TestContext.Current.CancellationToken);
        Assert.Equal((1, 0), ((int)Sidecars()["applied"]!, (int)Sidecars()["nacked"]!));
        Assert.Equal("""{"cp-a":{"applied":1,"nacked":0}}""", Sidecars()["replicas"]!.ToJsonString());
        await SeenAsync();

        // A replica with no sidecars left for it removes its own entry.
        await a.WriteAsync(source.Read([], []), state, Counts(0, 0), TestContext.Current.CancellationToken);
        Assert.Equal((0, 0), ((int)Sidecars()["applied"]!, (int)Sidecars()["nacked"]!));
        Assert.Equal("{}", Sidecars()["replicas"]!.ToJsonString());

        static Dictionary<string, SidecarCounts> Counts(int applied, int nacked) => new() { ["Service/shop/reviews"] = new(applied, nacked) };
    }

    /// <summary>A source running over the fake server, once it has read the one meshproxy.io Service "reviews".</summary>
    private async Task<CustomResourceSource> StartWithOneServiceAsync()
    {
        _server.Apply(MeshService("reviews", 80));
        var source = new CustomResourceSource(_client, new InformerOptions(), _time, NullLogger.Instance);
        _ = Task.Run(() => source.RunAsync(_stop.Token), TestContext.Current.CancellationToken);
        await EventuallyAsync(() => source.Read([], []).Resources.Count == 1, "the meshproxy.io Service is read");
        return source;
    }

    private static JsonNode Accepted(JsonObject obj) =>
        obj["status"]!["conditions"]!.AsArray().Single(c => (string?)c!["type"] == "Accepted")!;

    private static Task EventuallyAsync(Func<bool> condition, string what) =>
        TestControlPlane.EventuallyAsync(() => Task.FromResult(condition()), what, TimeSpan.FromSeconds(60));
}
