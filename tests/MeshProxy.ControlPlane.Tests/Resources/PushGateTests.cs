using System.Security.Cryptography;
using System.Text;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Validation;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Snapshots;

namespace MeshProxy.ControlPlane.Tests.Resources;

/// <summary>
/// The control plane's pre-push check: which resources are held back, which version of each is served,
/// and that every workload's closure of what is served passes the sidecar's own validation.
/// </summary>
public sealed class PushGateTests
{
    private static string Service(string name, string? hosts = null, int port = 80) => $"""
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: {"{"} name: {name}, namespace: shop {"}"}
        spec:
        {(hosts is null ? string.Empty : $"  hosts: [{hosts}]\n")}  ports: [{"{"} port: {port} {"}"}]

        """;

    private static string Route(string name, string host, string destination) => $"""
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: {"{"} name: {name}, namespace: shop {"}"}
        spec:
          hosts: [{host}]
          http: [{"{"} route: [{"{"} destination: {"{"} host: {destination} {"}"} {"}"}] {"}"}]

        """;

    private static string DestinationPolicy(string name, string host) => $"""
        apiVersion: meshproxy.io/v1alpha1
        kind: DestinationPolicy
        metadata: {"{"} name: {name}, namespace: shop {"}"}
        spec: {"{"} host: {host} {"}"}

        """;

    private static string Scope(string workload, string egressHost) => $"""
        apiVersion: meshproxy.io/v1alpha1
        kind: Sidecar
        metadata: {"{"} name: {workload}, namespace: shop {"}"}
        spec:
          app: {"{"} port: 8080 {"}"}
          egress: [{"{"} hosts: ["{egressHost}"] {"}"}]

        """;

    /// <summary>Each document as one stored resource, versioned by a hash of its text, as ResourceDirectory stores them.</summary>
    private static ConfigState State(params string[] documents) => ConfigState.Empty with
    {
        Generation = 1,
        Resources = [.. documents.Select((yaml, i) =>
        {
            var resource = Assert.Single(ResourceParser.ParseText(yaml, $"doc{i}.yaml").ThrowIfInvalid().Resources);
            return new StoredResource(resource, yaml, Version(yaml));
        })],
    };

    private static string Version(string yaml) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(yaml)))[..12];

    private static string[] Served(ConfigState state) => [.. state.Resources.Select(r => $"{r.Key}@{r.Version}")];

    private static string At(string key, string yaml) => $"{key}@{Version(yaml)}";

    /// <summary>One configuration, no history: what is held back (key | field | reason), and what stays served.</summary>
    public static TheoryData<string, string[], string[], string[]> SingleStates => new()
    {
        {
            "a route to an unknown host is held back, the rest served",
            [Service("a"), Route("r", "a", "nowhere"), DestinationPolicy("a", "a")],
            ["HttpRoute/shop/r | spec.http[0].route[0].destination.host | no Service answers to host 'nowhere'"],
            ["Service/shop/a", "DestinationPolicy/shop/a"]
        },
        {
            "a Service held back for a host conflict takes down what only it answered for",
            [Service("a"), Service("c", "a.shop, c"), Route("r", "c", "a"), DestinationPolicy("c", "c")],
            [
                "Service/shop/c | spec.hosts | host 'a.shop' is already claimed by Service shop/a (doc0.yaml:1)",
                "HttpRoute/shop/r | spec.hosts[0] | no Service answers to host 'c'",
                "DestinationPolicy/shop/c | spec.host | no Service answers to host 'c'",
            ],
            ["Service/shop/a"]
        },
        {
            "the first of two routes for one service is broken: it goes, and the second is served",
            [Service("a"), Route("first", "a", "nowhere"), Route("second", "a.shop", "a")],
            ["HttpRoute/shop/first | spec.http[0].route[0].destination.host | no Service answers to host 'nowhere'"],
            ["Service/shop/a", "HttpRoute/shop/second"]
        },
        {
            "both routes valid: the later one is the conflict",
            [Service("a"), Route("first", "a", "a"), Route("second", "a.shop", "a")],
            ["HttpRoute/shop/second | spec.hosts[0] | Service a is already routed by HttpRoute shop/first (doc1.yaml:1)"],
            ["Service/shop/a", "HttpRoute/shop/first"]
        },
        {
            "a valid set is served whole",
            [Service("a"), Service("b"), Route("r", "a", "b"), DestinationPolicy("b", "b.shop")],
            [],
            ["Service/shop/a", "Service/shop/b", "HttpRoute/shop/r", "DestinationPolicy/shop/b"]
        },
    };

    [Theory]
    [MemberData(nameof(SingleStates))]
    public void Held_back_resources_and_what_is_served(string what, string[] documents, string[] heldBack, string[] served)
    {
        var state = new PushGate().Apply(State(documents));

        Assert.True(
            heldBack.Order().SequenceEqual(state.HeldBack.SelectMany(h => h.Errors.Select(e => $"{h.Key} | {e.FieldPath} | {e.Reason}")).Order()),
            $"{what}: {string.Join("; ", state.HeldBack.SelectMany(h => h.Errors))}");
        Assert.All(state.HeldBack, h => Assert.Null(h.ServingVersion));
        Assert.Equal(served, state.Resources.Select(r => r.Key));
        Assert.Empty(ResourceSetValidator.Validate([.. state.Resources.Select(r => r.Resource)]));
    }

    [Fact]
    public void A_broken_edit_keeps_the_last_good_version_serving_until_it_is_fixed()
    {
        var gate = new PushGate();
        var good = Route("r", "a", "a");
        var broken = Route("r", "a", "nowhere");
        gate.Apply(State(Service("a"), good));

        var state = gate.Apply(State(Service("a"), broken));
        Assert.Equal([At("Service/shop/a", Service("a")), At("HttpRoute/shop/r", good)], Served(state));
        var held = Assert.Single(state.HeldBack);
        Assert.Equal(Version(broken), held.Refused.Version);
        Assert.Equal(Version(good), held.ServingVersion);
        Assert.Equal("no Service answers to host 'nowhere'", Assert.Single(held.Errors).Reason);

        // Still broken, in another way: the last good is still the first version.
        var broken2 = Route("r", "a", "elsewhere");
        state = gate.Apply(State(Service("a"), broken2));
        Assert.Equal(Version(good), Assert.Single(state.HeldBack).ServingVersion);

        // Fixed by the host appearing: the new version is served as written.
        state = gate.Apply(State(Service("a"), Service("elsewhere"), broken2));
        Assert.Empty(state.HeldBack);
        Assert.Contains(At("HttpRoute/shop/r", broken2), Served(state));
    }

    [Fact]
    public void A_last_good_version_that_no_longer_passes_is_not_served_either()
    {
        var gate = new PushGate();
        var good = Route("r", "a", "b");
        gate.Apply(State(Service("a"), Service("b"), good));

        // Service b is deleted in the same change that breaks the route: its last good version sends to b too.
        var state = gate.Apply(State(Service("a"), Route("r", "a", "nowhere")));
        Assert.Equal([At("Service/shop/a", Service("a"))], Served(state));
        var held = Assert.Single(state.HeldBack);
        Assert.Null(held.ServingVersion);
        Assert.Equal(["no Service answers to host 'nowhere'", "no Service answers to host 'b'"], held.Errors.Select(e => e.Reason));

        // An unchanged resource whose target is deleted goes as well: nothing to fall back to.
        gate = new PushGate();
        gate.Apply(State(Service("a"), Service("b"), good));
        state = gate.Apply(State(Service("a"), good));
        Assert.Null(Assert.Single(state.HeldBack).ServingVersion);
        Assert.Equal([At("Service/shop/a", Service("a"))], Served(state));
    }

    [Fact]
    public void A_deleted_resource_is_forgotten_last_good_included()
    {
        var gate = new PushGate();
        var good = Route("r", "a", "a");
        var broken = Route("r", "a", "nowhere");
        gate.Apply(State(Service("a"), good));
        gate.Apply(State(Service("a")));

        var state = gate.Apply(State(Service("a"), broken));
        Assert.Null(Assert.Single(state.HeldBack).ServingVersion);
        Assert.Equal([At("Service/shop/a", Service("a"))], Served(state));
    }

    /// <summary>
    /// Why checking the whole served set is enough: a workload's closure is a subset of it that carries the
    /// Services its routes name and its DestinationPolicies' Services, and it passes the sidecar's validation.
    /// </summary>
    [Theory]
    [MemberData(nameof(SingleStates))]
    public void Every_workloads_closure_of_what_is_served_passes_the_sidecars_validation(string what, string[] documents, string[] heldBack, string[] served)
    {
        Assert.NotNull(heldBack);
        Assert.NotNull(served); // the expectations of the other theory; here every case is just a configuration
        string[] scopes = [Scope("only-a", "./a.shop"), Scope("only-c", "./c"), Scope("nothing", "./none")];
        var state = new PushGate().Apply(State([.. documents, .. scopes]));
        foreach (var workload in new[] { "only-a", "only-c", "nothing", "unscoped" })
        {
            var closure = WorkloadSelector.Select(state, new Workload(workload, "shop", workload, new Dictionary<string, string>()));
            Assert.True(ResourceSetValidator.Validate([.. closure.Select(r => r.Resource)]).Count == 0, $"{what}: {workload}");
        }
    }
}
