using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using MeshProxy.ControlPlane.Kubernetes.Informers;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// The informer against the fake API server over real HTTP: paginated list, watch from the list's
/// resourceVersion with bookmarks, 410 answered by a relist swapped in whole, an expired continue token,
/// the server going away and coming back, malformed objects skipped.
/// </summary>
public sealed class InformerTests : IAsyncLifetime
{
    private FakeKubernetesApiServer _server = null!;
    private k8s.Kubernetes _client = null!;
    private readonly FakeTimeProvider _time = new();
    private readonly CancellationTokenSource _stop = new();

    public async ValueTask InitializeAsync()
    {
        _server = await FakeKubernetesApiServer.StartAsync();
        _client = new k8s.Kubernetes(new KubernetesClientConfiguration { Host = _server.BaseUri.ToString() });
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _client.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task ListsInPagesThenWatchesFromTheListsResourceVersionWithBookmarks()
    {
        for (var i = 0; i < 7; i++)
        {
            _server.Apply(KubeJson.Service("shop", $"svc-{i}"));
        }

        var listedAt = _server.ResourceVersion;
        var informer = Start(KubernetesResource<V1Service>.Services, pageSize: 3);
        await informer.Synced.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

        Assert.Equal(7, informer.Current.Items.Count);
        Assert.Equal(listedAt.ToString(), informer.Current.ResourceVersion);
        var requests = _server.Requests.ToList();
        var lists = requests.Where(r => r.StartsWith("GET /api/v1/services?", StringComparison.Ordinal) && !r.Contains("watch=true")).ToList();
        Assert.Equal(3, lists.Count); // 3 + 3 + 1
        Assert.DoesNotContain("continue=", lists[0]);
        Assert.All(lists.Skip(1), l => Assert.Contains("continue=", l));
        Assert.All(lists, l => Assert.Contains("limit=3", l));

        await EventuallyAsync(() => _server.OpenWatches == 1, "the watch is open");
        var watch = _server.Requests.Single(r => r.Contains("watch=true"));
        Assert.Contains($"resourceVersion={listedAt}", watch);
        Assert.Contains("allowWatchBookmarks=true", watch);
        Assert.Contains("timeoutSeconds=", watch);

        _server.Apply(KubeJson.Service("shop", "svc-7"));
        _server.Delete("v1", "Service", "shop", "svc-0");
        _server.Apply(KubeJson.Service("shop", "svc-1", port: 81));
        await EventuallyAsync(() => informer.Current.ResourceVersion == _server.ResourceVersion.ToString(), "the watch delivered every change");
        Assert.False(informer.Current.Items.ContainsKey("shop/svc-0"));
        Assert.True(informer.Current.Items.ContainsKey("shop/svc-7"));
        Assert.Equal(81, informer.Current.Items["shop/svc-1"].Spec.Ports[0].Port);

        // A change to another kind moves the store's revision on; the bookmark brings this watch's resume point along.
        _server.Apply(KubeJson.Namespace("other"));
        _server.SendBookmarks();
        await EventuallyAsync(() => informer.Current.ResourceVersion == _server.ResourceVersion.ToString(), "the bookmark moved the resourceVersion on");
        Assert.Equal(7, informer.Current.Items.Count);
    }

    [Fact]
    public async Task A410IsAnsweredByARelistThatReplacesTheCacheWholeNeverEmptyOrPartial()
    {
        for (var i = 0; i < 10; i++)
        {
            _server.Apply(KubeJson.Service("shop", $"svc-{i}"));
        }

        var informer = Start(KubernetesResource<V1Service>.Services, pageSize: 4);
        var seen = new List<int>();
        informer.Changed += () =>
        {
            lock (seen)
            {
                seen.Add(informer.Current.Items.Count);
            }
        };
        await informer.Synced.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        await EventuallyAsync(() => _server.OpenWatches == 1, "the watch is open");

        // While the informer is cut off, history moves on and is compacted: its resume point is gone.
        _server.SetReachable(false);
        await EventuallyAsync(() => !informer.Health.Connected, "the informer noticed");
        _server.Delete("v1", "Service", "shop", "svc-3");
        _server.Apply(KubeJson.Service("shop", "svc-new"));
        _server.Apply(KubeJson.Service("shop", "svc-5", port: 99));
        _server.Compact();
        _server.SetReachable(true);
        await EventuallyAsync(() => { _time.Advance(TimeSpan.FromSeconds(1)); return informer.Health.Relists == 1; }, "a relist after 410");

        Assert.Equal(10, informer.Current.Items.Count);
        Assert.False(informer.Current.Items.ContainsKey("shop/svc-3"));
        Assert.Equal(99, informer.Current.Items["shop/svc-5"].Spec.Ports[0].Port);
        Assert.Equal(_server.ResourceVersion.ToString(), informer.Current.ResourceVersion);
        lock (seen)
        {
            // Exactly two states were ever shown: the first list and the relist, each whole.
            Assert.Equal([10, 10], seen);
        }

        var watches = _server.Requests.Where(r => r.Contains("watch=true")).ToList();
        Assert.Contains(watches, w => w.Contains($"resourceVersion={_server.ResourceVersion}"));
    }

    [Fact]
    public async Task AnErrorEventWith410OnAnOpenWatchLeadsToARelist()
    {
        _server.Apply(KubeJson.Service("shop", "a"));
        var informer = Start(KubernetesResource<V1Service>.Services);
        await informer.Synced.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        await EventuallyAsync(() => _server.OpenWatches == 1, "the watch is open");

        _server.Apply(KubeJson.Service("shop", "b"));
        await EventuallyAsync(() => informer.Current.Items.Count == 2, "b arrived");
        _server.Compact(expireOpenWatches: true);
        await EventuallyAsync(() => informer.Health.Relists == 1, "relisted after the ERROR event");
        Assert.Equal(2, informer.Current.Items.Count);
        Assert.Equal(2, _server.Requests.Count(r => r.StartsWith("GET /api/v1/services?", StringComparison.Ordinal) && r.Contains("watch=false")));
    }

    [Fact]
    public async Task AnExpiredContinueTokenStartsTheListOver()
    {
        for (var i = 0; i < 5; i++)
        {
            _server.Apply(KubeJson.Service("shop", $"svc-{i}"));
        }

        var compacted = false;
        _server.BeforeRequest = line =>
        {
            if (!compacted && line.Contains("continue=", StringComparison.Ordinal))
            {
                compacted = true;
                _server.Apply(KubeJson.Service("shop", "svc-late"));
                _server.Compact();
            }
        };
        var informer = Start(KubernetesResource<V1Service>.Services, pageSize: 2);
        await informer.Synced.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

        Assert.Equal(6, informer.Current.Items.Count);
        var lists = _server.Requests.Where(r => r.StartsWith("GET /api/v1/services?", StringComparison.Ordinal) && !r.Contains("watch=true")).ToList();
        Assert.Equal(2, lists.Count(l => !l.Contains("continue="))); // the first page, asked twice
    }

    [Fact]
    public async Task KeepsTheLastKnownStateWhileTheApiServerIsUnreachableAndResyncsOnReturn()
    {
        _server.Apply(KubeJson.Service("shop", "a"));
        _server.Apply(KubeJson.Service("shop", "b"));
        var informer = Start(KubernetesResource<V1Service>.Services);
        await informer.Synced.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        await EventuallyAsync(() => _server.OpenWatches == 1, "the watch is open");

        _server.SetReachable(false);
        await EventuallyAsync(() => !informer.Health.Connected, "the informer noticed");
        Assert.NotNull(informer.Health.DisconnectedSince);
        Assert.NotNull(informer.Health.LastError);
        Assert.Equal(2, informer.Current.Items.Count);

        // Several retries, all failing, with the backoff on the fake clock: the state stays.
        for (var i = 0; i < 5; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(30));
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }

        Assert.False(informer.Health.Connected);
        Assert.Equal(2, informer.Current.Items.Count);

        _server.Delete("v1", "Service", "shop", "a");
        _server.SetReachable(true);
        await EventuallyAsync(() => { _time.Advance(TimeSpan.FromSeconds(30)); return informer.Health.Connected && informer.Current.Items.Count == 1; }, "resynced");
        Assert.Null(informer.Health.DisconnectedSince);
        Assert.Equal(0, informer.Health.Relists); // history was not compacted: the watch resumed where it was
    }

    [Fact]
    public async Task AfterAnOutageOfAQuietClusterItIsConnectedAgainWithoutWaitingForAnEvent()
    {
        _server.Apply(KubeJson.Service("shop", "a"));
        var informer = Start(KubernetesResource<V1Service>.Services);
        await informer.Synced.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        await EventuallyAsync(() => _server.OpenWatches == 1, "the watch is open");

        _server.SetReachable(false);
        await EventuallyAsync(() => !informer.Health.Connected, "the informer noticed");
        _server.SetReachable(true);
        // No change, no bookmark: only the API server answering again.
        await EventuallyAsync(() => { _time.Advance(TimeSpan.FromSeconds(30)); return informer.Health.Connected; }, "connected again");
        await EventuallyAsync(() => _server.OpenWatches == 1, "the watch is open again");
        Assert.Equal(0, informer.Health.Relists);
        Assert.Single(informer.Current.Items);
    }

    [Fact]
    public async Task AMalformedObjectIsSkippedAndItsLastGoodVersionKept()
    {
        _server.Apply(KubeJson.Service("shop", "a", port: 80));
        _server.Apply(KubeJson.Service("shop", "b", port: 80));
        var informer = Start(KubernetesResource<V1Service>.Services);
        await informer.Synced.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        await EventuallyAsync(() => _server.OpenWatches == 1, "the watch is open");

        // What no real API server lets through for a built-in kind, but a CRD with a loose schema can: a field of the wrong type.
        _server.ApplyRaw("v1", "Service", "shop", "a", o =>
        {
            o["spec"]!["ports"]![0]!["port"] = "eighty";
            return o;
        });
        _server.Apply(KubeJson.Service("shop", "b", port: 81));
        await EventuallyAsync(() => informer.Current.Items["shop/b"].Spec.Ports[0].Port == 81, "the next change arrived");
        Assert.Equal(80, informer.Current.Items["shop/a"].Spec.Ports[0].Port);
        Assert.True(informer.Health.Connected);
    }

    [Fact]
    public async Task ACustomResourceWithAMalformedItemIsListedWithoutIt()
    {
        _server.RegisterResource("example.io", "v1", "widgets", "Widget", namespaced: true);
        _server.Apply("""{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"good","namespace":"shop"},"spec":{"size":1}}""");
        _server.Apply("""{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"bad","namespace":"shop"},"spec":{"size":2}}""");
        _server.ApplyRaw("example.io/v1", "Widget", "shop", "bad", o =>
        {
            o["metadata"]!["labels"] = "not a map";
            return o;
        });
        var informer = Start(KubernetesResource<Widget>.Custom("example.io", "v1", "widgets"));
        await informer.Synced.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        Assert.Equal(["shop/good"], informer.Current.Items.Keys);

        _server.Apply("""{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"new","namespace":"shop"},"spec":{"size":3}}""");
        await EventuallyAsync(() => informer.Current.Items.ContainsKey("shop/new"), "the watch delivered a custom resource");
        Assert.Equal(3, informer.Current.Items["shop/new"].Spec!["size"]!.GetValue<int>());
    }

    private Informer<T> Start<T>(KubernetesResource<T> resource, int pageSize = 500)
        where T : class, IKubernetesObject<V1ObjectMeta>
    {
        var informer = new Informer<T>(_client, resource, new InformerOptions { PageSize = pageSize }, _time, NullLogger.Instance);
        _ = Task.Run(() => informer.RunAsync(_stop.Token));
        return informer;
    }

    private static Task EventuallyAsync(Func<bool> condition, string what) =>
        TestControlPlane.EventuallyAsync(() => Task.FromResult(condition()), what, TimeSpan.FromSeconds(30));

    /// <summary>A custom resource as a test reads it.</summary>
    public sealed class Widget : IKubernetesObject<V1ObjectMeta>
    {
        [System.Text.Json.Serialization.JsonPropertyName("apiVersion")]
        public string ApiVersion { get; set; } = "example.io/v1";

        [System.Text.Json.Serialization.JsonPropertyName("kind")]
        public string Kind { get; set; } = "Widget";

        [System.Text.Json.Serialization.JsonPropertyName("metadata")]
        public V1ObjectMeta Metadata { get; set; } = new();

        [System.Text.Json.Serialization.JsonPropertyName("spec")]
        public JsonObject? Spec { get; set; }
    }
}
