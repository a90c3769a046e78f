using System.Diagnostics;
using System.Text.Json.Nodes;
using MeshProxy.Config.Schema;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// Issue 17's status counts with several replicas, with real processes: each replica counts the sidecars connected to
/// it and writes its own entry in a custom object's <c>status.sidecars.replicas</c>, and <c>applied</c> is their sum.
/// Three sidecars split between two replicas: the status counts all three. One replica killed and its pod deleted: its
/// sidecar reconnects to the survivor, whose next write drops the dead replica's entry, and the count is still three,
/// now all the survivor's.
/// </summary>
public sealed partial class ReplicaFailoverTests
{
    [Fact]
    public async Task Status_counts_are_the_sum_over_replicas_and_a_killed_replicas_share_moves_to_the_survivor()
    {
        foreach (var kind in ResourceSchemas.All)
        {
            _api.RegisterResource(ResourceSchemas.Group, ResourceSchemas.Version, kind.Plural, kind.Kind, namespaced: true);
        }

        // Every sidecar holds this Service (none is scoped by a Sidecar resource).
        _api.Apply("""
            {"apiVersion":"meshproxy.io/v1alpha1","kind":"Service","metadata":{"name":"catalog","namespace":"shop"},
             "spec":{"ports":[{"port":80,"protocol":"HTTP"}],"endpoints":[{"address":"127.0.0.1","port":18099}]}}
            """);
        var (a, b) = (StartReplica("a"), StartReplica("b"));
        _api.Apply(ControlPlanePod(a.Pod));
        _api.Apply(ControlPlanePod(b.Pod));
        await Task.WhenAll(a.ReadyAsync(), b.ReadyAsync());
        var caFile = await TrustBundleFileAsync();

        // The Service's endpoints decide which replica each new config stream reaches: web-1 and web-2 on a, api-1 on b.
        using var service = await KubeProxyService.CreateAsync(15012, [a.TlsPort]);
        using var web1 = new SidecarPorts("web");
        using var web2 = new SidecarPorts("web");
        using var api1 = new SidecarPorts("api");
        await StartSidecarAsync(web1, "web-1", 18080, service, caFile);
        await StartSidecarAsync(web2, "web-2", 18080, service, caFile);
        await EventuallyAsync(async () => (await StreamsAsync(a)).Count(r => r.Status == "SYNCED") == 2, "web-1 and web-2 synced with a", TimeSpan.FromSeconds(90), a, b);
        await service.SetEndpointsAsync([b.TlsPort]);
        await StartSidecarAsync(api1, "api-1", 18081, service, caFile);
        await EventuallyAsync(async () => (await StreamsAsync(b)).Any(r => r.InstanceId == "api-1.shop" && r.Status == "SYNCED"), "api-1 synced with b", TimeSpan.FromSeconds(90), a, b);
        await service.SetEndpointsAsync([a.TlsPort, b.TlsPort]);

        await EventuallyAsync(() => Task.FromResult(Replicas() == $"{a.Pod}=2/0 {b.Pod}=1/0" && Applied() == 3),
            $"catalog's status counts 3 sidecars, 2 on a and 1 on b (it says {Applied()}: {Replicas()})", TimeSpan.FromSeconds(60), a, b);

        // b dies and its pod is deleted (as when its node is drained or the ReplicaSet replaces it); kube-proxy takes it
        // out of the Service; api-1 reconnects to a.
        b.Process.Signal(9);
        Assert.True(await b.Process.ExitsWithinAsync(TimeSpan.FromSeconds(30)), "SIGKILL did not end replica b");
        Assert.True(_api.Delete("v1", "Pod", SystemNs, b.Pod));
        await service.SetEndpointsAsync([a.TlsPort]);
        var highest = 0;
        var watch = Stopwatch.StartNew();
        await EventuallyAsync(
            async () =>
            {
                highest = Math.Max(highest, Applied() ?? 0);
                return (await StreamsAsync(a)).Count(r => r.Status == "SYNCED") == 3 && Replicas() == $"{a.Pod}=3/0" && Applied() == 3;
            },
            $"catalog's status counts 3 sidecars, all on a (it says {Applied()}: {Replicas()})", TimeSpan.FromSeconds(90), a);
        TestContext.Current.TestOutputHelper?.WriteLine($"after the kill: settled in {watch.Elapsed.TotalSeconds:0.0} s; the highest applied count seen meanwhile {highest}");
    }

    private JsonObject? CatalogSidecars() =>
        _api.Get("meshproxy.io/v1alpha1", "Service", "shop", "catalog")?["status"]?["sidecars"] as JsonObject;

    private int? Applied() => (int?)CatalogSidecars()?["applied"];

    /// <summary>"pod=applied/nacked" per replica entry, in name order.</summary>
    private string Replicas() => CatalogSidecars()?["replicas"] is JsonObject replicas
        ? string.Join(' ', replicas.OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => $"{r.Key}={r.Value!["applied"]}/{r.Value["nacked"]}"))
        : string.Empty;
}
