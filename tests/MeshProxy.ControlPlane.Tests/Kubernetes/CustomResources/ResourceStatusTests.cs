using System.Text.Json;
using MeshProxy.Api.V1;
using MeshProxy.Config.Parsing;
using MeshProxy.ControlPlane.Discovery;
using MeshProxy.ControlPlane.Kubernetes.CustomResources;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Snapshots;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.CustomResources;

public sealed class ResourceStatusTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 7, 6, 0, 0, TimeSpan.Zero);

    private static ConfigState State() => ConfigState.Empty with
    {
        Generation = 1,
        Resources = [.. ResourceParser.ParseText("""
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: reviews, namespace: shop }
            spec: { ports: [{ port: 80 }] }
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: { name: store-only, namespace: shop }
            spec: { selector: { matchLabels: { app: store } }, rules: [{}] }
            """, "x.yaml").ThrowIfInvalid().Resources.Select(r => new StoredResource(r, string.Empty, "v1"))],
    };

    private static SidecarConnection Sidecar(string app, string id) =>
        new(new Node { Workload = app, Namespace = "shop", ServiceAccount = app, InstanceId = id, Labels = { ["app"] = app } }, "10.0.0.1:1", Now);

    [Fact]
    public void Sidecars_that_acked_their_current_snapshot_applied_each_resource_in_it_and_a_nack_counts_only_against_the_resources_it_names()
    {
        var state = State();
        var cache = new SnapshotCache();
        var storeA = Sidecar("store", "a");
        var storeB = Sidecar("store", "b");
        var web = Sidecar("web", "c");
        var waiting = Sidecar("store", "d");
        foreach (var c in new[] { storeA, storeB, web, waiting })
        {
            c.RecordSent(cache.Get(state, c.Workload), "n1", Now, 0);
        }

        storeA.RecordAck(cache.Get(state, storeA.Workload).Version, Now);
        web.RecordAck(cache.Get(state, web.Workload).Version, Now);
        storeB.RecordNack(new NackRecord(cache.Get(state, storeB.Workload).Version, "n1",
            "AuthorizationPolicy/shop/store-only:1: spec.rules[0]: something the sidecar refused; Service/shop/unrelated:1: x", Now));

        var counts = ResourceStatus.CountSidecars(state, [storeA, storeB, web, waiting], cache);

        Assert.Equal(new SidecarCounts(1, 1), counts["AuthorizationPolicy/shop/store-only"]); // web is not selected by it
        Assert.Equal(new SidecarCounts(2, 0), counts["Service/shop/reviews"]);
        Assert.False(counts.ContainsKey("Service/shop/unrelated")); // named, but not in that sidecar's snapshot
    }

    [Fact]
    public void An_ack_of_an_older_snapshot_is_not_applied_until_the_current_one_is_acked()
    {
        var state = State();
        var cache = new SnapshotCache();
        var store = Sidecar("store", "a");
        store.RecordSent(cache.Get(state, store.Workload), "n1", Now, 0);
        store.RecordAck("an-older-version", Now);

        Assert.Empty(ResourceStatus.CountSidecars(state, [store], cache));
    }

    [Fact]
    public void A_valid_resource_is_Accepted_with_its_counts_and_generation()
    {
        var status = ResourceStatus.Build(7, [], null, new SidecarCounts(3, 1), default, Now);

        var condition = status["conditions"]![0]!;
        Assert.Equal(("Accepted", "True", "Accepted", 7L), ((string?)condition["type"], (string?)condition["status"], (string?)condition["reason"], (long)condition["observedGeneration"]!));
        Assert.Equal(7L, (long)status["observedGeneration"]!);
        Assert.Equal((3, 1), ((int)status["sidecars"]!["applied"]!, (int)status["sidecars"]!["nacked"]!));
        Assert.Equal("2026-12-07T06:00:00Z", (string?)condition["lastTransitionTime"]);
    }

    [Fact]
    public void A_parser_error_is_Invalid_with_field_and_reason_and_no_file()
    {
        var status = ResourceStatus.Build(2, [new ConfigDiagnostic("HttpRoute/shop/r", 1, "spec.http[0].timeout", "'soon' is not a duration")], null, SidecarCounts.None, default, Now);

        var condition = status["conditions"]![0]!;
        Assert.Equal(("False", "Invalid"), ((string?)condition["status"], (string?)condition["reason"]));
        Assert.Equal("spec.http[0].timeout: 'soon' is not a duration; not served", (string?)condition["message"]);
    }

    [Fact]
    public void A_held_back_resource_is_Invalid_and_says_whether_its_last_accepted_version_still_serves()
    {
        var stored = State().Resources[0];
        var held = new HeldBackResource(stored, [new ConfigDiagnostic("Service/shop/reviews", 1, "spec.hosts", "host 'x' is already claimed")], "v0");

        var condition = ResourceStatus.Build(2, [], held, SidecarCounts.None, default, Now)["conditions"]![0]!;

        Assert.Equal("Invalid", (string?)condition["reason"]);
        Assert.Equal("spec.hosts: host 'x' is already claimed; its last accepted version keeps serving", (string?)condition["message"]);
    }

    [Fact]
    public void The_transition_time_stays_while_the_condition_does_not_change_and_moves_when_it_does()
    {
        var first = ResourceStatus.Build(1, [], null, SidecarCounts.None, default, Now);
        var previous = JsonDocument.Parse(first.ToJsonString()).RootElement;

        var same = ResourceStatus.Build(2, [], null, new SidecarCounts(5, 0), previous, Now.AddHours(1));
        var changed = ResourceStatus.Build(3, [new ConfigDiagnostic("f", 1, "spec", "bad")], null, SidecarCounts.None, previous, Now.AddHours(2));

        Assert.Equal("2026-12-07T06:00:00Z", (string?)same["conditions"]![0]!["lastTransitionTime"]);
        Assert.Equal("2026-12-07T08:00:00Z", (string?)changed["conditions"]![0]!["lastTransitionTime"]);
    }

    [Fact]
    public void The_counts_are_the_sum_of_each_live_replicas_entry_with_this_replicas_own_replaced_and_a_dead_ones_dropped()
    {
        var previous = JsonDocument.Parse("""
            {"sidecars":{"applied":9,"nacked":1,"replicas":{
              "cp-a":{"applied":4,"nacked":0},"cp-b":{"applied":3,"nacked":1},"cp-gone":{"applied":2,"nacked":0}}}}
            """).RootElement;
        var view = new ReplicaView("cp-a", name => name != "cp-gone");

        var sidecars = ResourceStatus.Sidecars(previous, new SidecarCounts(5, 2), view);

        Assert.Equal("""{"applied":8,"nacked":3,"replicas":{"cp-a":{"applied":5,"nacked":2},"cp-b":{"applied":3,"nacked":1}}}""", sidecars.ToJsonString());
        // No sidecar of this replica answers for it any more: its entry leaves, the others' stay.
        Assert.Equal("""{"applied":3,"nacked":1,"replicas":{"cp-b":{"applied":3,"nacked":1}}}""", ResourceStatus.Sidecars(previous, SidecarCounts.None, view).ToJsonString());
        // Alone, nobody else's entry counts (a single control plane, or the first write).
        Assert.Equal("""{"applied":5,"nacked":2,"replicas":{"controlplane":{"applied":5,"nacked":2}}}""", ResourceStatus.Sidecars(default, new SidecarCounts(5, 2), ReplicaView.Alone).ToJsonString());
    }
}
