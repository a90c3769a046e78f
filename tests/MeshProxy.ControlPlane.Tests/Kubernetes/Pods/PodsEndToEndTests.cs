using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.Pods;

/// <summary>
/// Issues 17 and 18 end to end: the control plane in Kubernetes mode on the fake API server, and real sidecars in pods
/// (network namespaces with their own pod IPs on a bridge, traffic captured by meshproxy-init, see <see cref="PodCluster"/>).
/// The test plays the Deployment and EndpointSlice controllers and the kubelet (pods created, marked terminating,
/// signalled, deleted); every request of the load loops goes app to sidecar to sidecar to app, by service name.
/// Root and iproute2 required; each test builds and removes its own cluster.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class PodsEndToEndTests
{
    private const string Backend = "http://backend.shop.svc.cluster.local/";
    private const string TrustDomain = Certificates.CaTestKit.TrustDomain;

    [Fact]
    public async Task A_service_of_sidecar_pods_is_reached_by_name_scaled_and_rolled_under_load_without_one_failed_request()
    {
        Assert.SkipUnless(Environment.UserName == "root", "needs root: network namespaces, a bridge and iptables");
        await using var cluster = await PodCluster.StartAsync();
        cluster.Service("backend", "10.96.0.20");
        var v1a = await cluster.StartPodAsync("backend-v1-a", "backend", "backend");
        var v1b = await cluster.StartPodAsync("backend-v1-b", "backend", "backend");
        cluster.Slice("backend", v1a, v1b);
        var client = await cluster.StartPodAsync("client-1", "client", "client");
        cluster.Api.Apply(Pool("backend-pool", "2s"));

        // Discovered: the client's sidecar sends backend to the two pods' IPs, each with its Pod's service account.
        await client.WaitForEndpointsAsync("backend", v1a, v1b);
        var endpoints = (await client.ConfigDumpAsync()).GetProperty("virtualHosts").EnumerateArray()
            .Single(v => v.GetProperty("service").GetString() == "backend.shop.svc.cluster.local").GetProperty("endpoints").EnumerateArray();
        Assert.All(endpoints, e => Assert.Equal("backend", e.GetProperty("identity").GetString()));

        // Reached by name from an app that knows nothing of the mesh: its connection to the cluster IP is captured, and the
        // hop between the pods is mutual TLS between the two service accounts' SVIDs.
        var (status, body) = await client.CurlAsync(Backend + "hello");
        Assert.True(status == 200, body);
        var hello = JsonNode.Parse(body)!;
        Assert.Contains(hello["app"]!.GetValue<string>(), new[] { v1a.Name, v1b.Name });
        Assert.Equal("127.0.0.1", hello["peer"]!.GetValue<string>());
        var xfcc = hello["headers"]!["x-forwarded-client-cert"]!.GetValue<string>();
        Assert.StartsWith($"By=spiffe://{TrustDomain}/ns/shop/sa/backend;", xfcc, StringComparison.Ordinal);
        Assert.Contains($"URI=spiffe://{TrustDomain}/ns/shop/sa/client", xfcc, StringComparison.Ordinal);

        // Status counts: the policy's status says how many sidecars applied it, which is how many hold it now.
        await AppliedByAsync(cluster, "backend-pool", [v1a, v1b, client]);

        await using var load = client.StartLoad(Backend);
        await load.WaitForAnswersFromAsync(5, v1a.Name, v1b.Name);

        // Scale up: a third pod, ready in the slice, gets its share.
        var v1c = await cluster.StartPodAsync("backend-v1-c", "backend", "backend");
        cluster.Slice("backend", v1a, v1b, v1c);
        await client.WaitForEndpointsAsync("backend", v1a, v1b, v1c);
        await load.WaitForAnswersFromAsync(5, v1c.Name);
        await AppliedByAsync(cluster, "backend-pool", [v1a, v1b, v1c, client]);

        // Scale down: v1c serving but terminating (no new requests), then signalled, drained and removed.
        await RemoveAsync(cluster, client, v1c, remaining: [v1a, v1b]);
        await load.WaitForAnswersFromAsync(5, v1a.Name, v1b.Name);
        await AppliedByAsync(cluster, "backend-pool", [v1a, v1b, client]);

        // A rolling update, maxSurge 1 / maxUnavailable 0: each new pod comes up and is ready before an old one goes.
        var v2a = await cluster.StartPodAsync("backend-v2-a", "backend", "backend");
        cluster.Slice("backend", v1a, v1b, v2a);
        await client.WaitForEndpointsAsync("backend", v1a, v1b, v2a);
        await RemoveAsync(cluster, client, v1a, remaining: [v1b, v2a]);
        var v2b = await cluster.StartPodAsync("backend-v2-b", "backend", "backend");
        cluster.Slice("backend", v1b, v2a, v2b);
        await client.WaitForEndpointsAsync("backend", v1b, v2a, v2b);
        await RemoveAsync(cluster, client, v1b, remaining: [v2a, v2b]);
        await load.WaitForAnswersFromAsync(5, v2a.Name, v2b.Name);

        // From now on only the new pods answer.
        var before = load.Tally.By;
        await load.WaitForAnswersFromAsync(20, v2a.Name);
        var after = load.Tally.By;
        foreach (var old in new[] { v1a, v1b, v1c })
        {
            Assert.Equal(before.GetValueOrDefault(old.Name), after.GetValueOrDefault(old.Name));
        }

        var final = await load.StopAsync();
        Assert.True(final.Failed == 0, $"{final.Failed} failed of {final.Ok + final.Failed}: {string.Join('\n', load.Failures)}");
        Assert.Equal(["backend-v1-a", "backend-v1-b", "backend-v1-c", "backend-v2-a", "backend-v2-b"], final.By.Keys.Order());
        await AppliedByAsync(cluster, "backend-pool", [v2a, v2b, client]);
    }

    /// <summary>
    /// The kubelet's and EndpointSlice controller's part in deleting a pod, in the order that loses no request: the
    /// endpoint turns serving-but-terminating, the client's sidecar stops choosing it (its applied config no longer lists
    /// it), the pod's sidecar gets SIGTERM and drains, then the Pod and its endpoint are gone.
    /// </summary>
    private static async Task RemoveAsync(PodCluster cluster, PodCluster.Pod client, PodCluster.Pod leaving, PodCluster.Pod[] remaining)
    {
        cluster.Slice("backend", [.. remaining.Select(p => (p, true, true, false)), (leaving, false, true, true)]);
        await client.WaitForEndpointsAsync("backend", remaining);
        await leaving.TerminateAsync();
        cluster.Slice("backend", remaining);
        Assert.True(cluster.Api.Delete("v1", "Pod", PodCluster.Ns, leaving.Name));
    }

    /// <summary>Waits until the DestinationPolicy's status counts exactly the sidecars among <paramref name="pods"/> that hold it (as their config dumps say), all of them.</summary>
    private static async Task AppliedByAsync(PodCluster cluster, string policy, PodCluster.Pod[] pods)
    {
        var holding = 0;
        foreach (var pod in pods)
        {
            var resources = (await pod.ConfigDumpAsync()).GetProperty("resources").EnumerateArray();
            holding += resources.Any(r => r.GetProperty("kind").GetString() == "DestinationPolicy" && r.GetProperty("name").GetString() == policy) ? 1 : 0;
        }

        Assert.True(holding > 0, $"no sidecar holds {policy}");
        await TestControlPlane.EventuallyAsync(
            () => Task.FromResult(Sidecars(cluster, policy) == (holding, 0)),
            $"{policy}'s status counts {holding} sidecars applied, none NACKed (it says {Sidecars(cluster, policy)})",
            TimeSpan.FromSeconds(30));
    }

    private static (int Applied, int Nacked)? Sidecars(PodCluster cluster, string policy) =>
        cluster.Api.Get("meshproxy.io/v1alpha1", "DestinationPolicy", PodCluster.Ns, policy)?["status"]?["sidecars"] is JsonObject s ? ((int)s["applied"]!, (int)s["nacked"]!) : null;

    private static string Pool(string name, string connectTimeout) => $$"""
        {"apiVersion":"meshproxy.io/v1alpha1","kind":"DestinationPolicy","metadata":{"name":"{{name}}","namespace":"shop"},
         "spec":{"host":"backend","connectionPool":{"tcp":{"connectTimeout":"{{connectTimeout}}"} } } }
        """;
}
