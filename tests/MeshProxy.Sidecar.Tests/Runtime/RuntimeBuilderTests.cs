using MeshProxy.Config.Parsing;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using MeshProxy.Sidecar.Runtime;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Runtime;

/// <summary>
/// What a snapshot's runtime takes over from the one it replaces (Runtime/RuntimeBuilder.cs), on snapshots built
/// from YAML as the sidecar builds them and pools whose handlers record their disposal.
/// </summary>
public sealed class RuntimeBuilderTests
{
    private static string Route(string rule) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: { name: billing, namespace: test }
        spec:
          hosts: [billing]
          http:
            - name: {{rule}}
              route:
                - destination: { host: billing-v2 }
        """;

    private static SidecarSnapshot Build(MeshYaml yaml, string version) =>
        SnapshotBuilder.Build(ResourceParser.ParseText(yaml.ToString(), "test.yaml"), version, "test.yaml", DateTimeOffset.UnixEpoch);

    private static MeshYaml Mesh(params string[] services)
    {
        var yaml = new MeshYaml("store", 1);
        foreach (var (name, i) in services.Select((n, i) => (n, i)))
        {
            yaml.Service(name, 80, "HTTP", 9001 + i, 9101 + i);
        }

        return yaml;
    }

    private static Cluster ClusterOf(SidecarSnapshot snapshot, string service) =>
        snapshot.Clusters().Single(c => c.ServiceName == service && !ReferenceEquals(c, snapshot.InboundCluster));

    [Fact]
    public void An_unchanged_cluster_keeps_its_state_endpoint_health_and_pool()
    {
        var pools = new RecordingPools();
        var first = RuntimeBuilder.Build(Build(Mesh("billing"), "v1"), null, pools);
        var before = ClusterOf(first.Snapshot, "billing");
        before.State.Stats.Retry();
        before.Endpoints[0].Health.VerifiedPrincipal = "spiffe://cluster.local/ns/test/sa/billing";

        var second = RuntimeBuilder.Build(Build(Mesh("billing", "audit"), "v2"), first, pools);

        var after = ClusterOf(second.Snapshot, "billing");
        Assert.NotSame(before, after); // a new snapshot's own cluster...
        Assert.Same(before.State, after.State); // ...with the live state of its namesake
        Assert.Equal(1, after.State.Stats.Retries);
        Assert.Same(before.Endpoints[0].Health, after.Endpoints[0].Health);
        Assert.Same(before.Pool, after.Pool);
        Assert.Same(second.Pools[after.Name], after.Pool);
        Assert.True(after.Pool!.TryAcquire()); // not retired
        after.Pool.Release();
        Assert.Equal(2, pools.Created.Count); // billing's, then audit's only
        Assert.DoesNotContain(pools.Created, p => p.Disposed);
        Assert.Null(second.Snapshot.InboundCluster.Pool); // the local app has the transport's inbound client
    }

    [Fact]
    public void A_removed_cluster_is_dropped_and_its_pool_closed()
    {
        var pools = new RecordingPools();
        var first = RuntimeBuilder.Build(Build(Mesh("billing", "audit"), "v1"), null, pools);
        var billing = ClusterOf(first.Snapshot, "billing");
        var audit = ClusterOf(first.Snapshot, "audit");
        audit.State.Stats.Retry();

        var second = RuntimeBuilder.Build(Build(Mesh("billing"), "v2"), first, pools);

        Assert.DoesNotContain(second.Snapshot.Clusters(), c => c.ServiceName == "audit");
        Assert.False(second.Pools.ContainsKey(audit.Name));
        Assert.False(audit.Pool!.TryAcquire()); // a request still on the old snapshot falls back to the shared pool
        Assert.True(pools.Of(audit).Disposed); // nothing was in flight: closed at once
        Assert.False(pools.Of(billing).Disposed);

        // Back again: fresh state and a new pool, nothing of the dropped one.
        var third = RuntimeBuilder.Build(Build(Mesh("billing", "audit"), "v3"), second, pools);
        var back = ClusterOf(third.Snapshot, "audit");
        Assert.NotSame(audit.State, back.State);
        Assert.Equal(0, back.State.Stats.Retries);
        Assert.NotSame(audit.Pool, back.Pool);
    }

    [Fact]
    public void A_pool_whose_settings_changed_is_replaced_and_the_state_kept()
    {
        const string Policy = """
            apiVersion: meshproxy.io/v1alpha1
            kind: DestinationPolicy
            metadata: { name: billing, namespace: test }
            spec:
              host: billing
              connectionPool: { http: { idleTimeout: 60s } }
            """;
        var pools = new RecordingPools();
        var first = RuntimeBuilder.Build(Build(Mesh("billing"), "v1"), null, pools);
        var before = ClusterOf(first.Snapshot, "billing");

        var second = RuntimeBuilder.Build(Build(Mesh("billing").Raw(Policy), "v2"), first, pools);

        var after = ClusterOf(second.Snapshot, "billing");
        Assert.Same(before.State, after.State);
        Assert.NotSame(before.Pool, after.Pool);
        Assert.True(pools.Of(before).Disposed);
        Assert.Equal(TimeSpan.FromSeconds(60), ((ClusterPool)after.Pool!).Settings.IdleTimeout);
    }

    [Fact]
    public void Labels_follow_a_renamed_route_and_keep_their_strings()
    {
        var pools = new RecordingPools();
        var first = RuntimeBuilder.Build(Build(Mesh("billing", "billing-v2").Raw(Route("split")), "v1"), null, pools);
        var second = RuntimeBuilder.Build(Build(Mesh("billing", "billing-v2").Raw(Route("canary")), "v2"), first, pools);

        Assert.Same(second.Snapshot, second.Labels.Snapshot);
        Assert.True(second.Snapshot.Services.TryResolve("billing", 80, out var billing));
        var rule = Assert.Single(billing!.Rules);
        Assert.Equal("canary", rule.Name);
        var destination = Assert.Single(rule.Destinations).Cluster;

        var now = second.Labels.Outbound(destination, null, null);
        var then = first.Labels.Outbound(ClusterOf(first.Snapshot, "billing-v2"), null, null);
        Assert.Equal("billing-v2", now.DestinationServiceName);
        Assert.Equal("billing-v2.test.svc.cluster.local", now.DestinationService);
        Assert.Same(then.DestinationService, now.DestinationService); // the series is found by reference
        Assert.Same(first.Labels.PeerHeader, second.Labels.PeerHeader);
        Assert.Same(first.InboundTransformer, second.InboundTransformer);
    }

    [Fact]
    public void A_new_workload_identity_gets_a_new_inbound_transformer()
    {
        var pools = new RecordingPools();
        var first = RuntimeBuilder.Build(Build(Mesh("billing"), "v1"), null, pools);
        var renamed = new MeshYaml("checkout", 1).Service("billing", 80, "HTTP", 9001);

        var second = RuntimeBuilder.Build(Build(renamed, "v2"), first, pools);

        Assert.NotEqual(first.Labels.PeerHeader, second.Labels.PeerHeader);
        Assert.NotSame(first.InboundTransformer, second.InboundTransformer);
        Assert.Equal("checkout", second.Labels.LocalApp);
    }

    /// <summary>Pools whose handlers record their disposal (no socket is opened).</summary>
    private sealed class RecordingPools : IClusterPools
    {
        public List<RecordingPool> Created { get; } = [];

        public RecordingPool Of(Cluster cluster) => Created.Single(p => ReferenceEquals(p.Pool, cluster.Pool));

        public ClusterPool Create(PoolSettings settings)
        {
            var handler = new DisposalHandler();
            var pool = new ClusterPool(settings, new HttpMessageInvoker(handler), new HttpMessageInvoker(new DisposalHandler()));
            Created.Add(new RecordingPool(pool, handler));
            return pool;
        }
    }

    private sealed record RecordingPool(ClusterPool Pool, DisposalHandler Handler)
    {
        public bool Disposed => Handler.Disposed;
    }

    private sealed class DisposalHandler : HttpMessageHandler
    {
        public bool Disposed { get; private set; }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("no request is sent in these tests");

        protected override void Dispose(bool disposing)
        {
            Disposed = true;
            base.Dispose(disposing);
        }
    }
}
