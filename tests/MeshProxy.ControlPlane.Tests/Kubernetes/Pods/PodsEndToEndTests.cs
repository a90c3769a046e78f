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
        var (v1a, v1b, client) = await Both(
            cluster.StartPodAsync("backend-v1-a", "backend", "backend"), cluster.StartPodAsync("backend-v1-b", "backend", "backend"),
            cluster.StartPodAsync("client-1", "client", "client"));
        cluster.Slice("backend", v1a, v1b);
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

        // A rolling update, maxSurge 2 / maxUnavailable 0: the new pods come up, each is ready in the slice before an
        // old one goes, one at a time.
        var (v2a, v2b) = await Both(cluster.StartPodAsync("backend-v2-a", "backend", "backend"), cluster.StartPodAsync("backend-v2-b", "backend", "backend"));
        cluster.Slice("backend", v1a, v1b, v2a);
        await client.WaitForEndpointsAsync("backend", v1a, v1b, v2a);
        await RemoveAsync(cluster, client, v1a, remaining: [v1b, v2a]);
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

    [Fact]
    public async Task Each_pod_has_its_own_identity_an_httproute_moves_traffic_a_bad_object_shows_invalid_and_the_api_server_away_stops_nothing()
    {
        Assert.SkipUnless(Environment.UserName == "root", "needs root: network namespaces, a bridge and iptables");
        await using var cluster = await PodCluster.StartAsync();
        cluster.Service("backend", "10.96.0.20");
        cluster.Service("backend-canary", "10.96.0.21");
        var (stable, canary, client) = await Both(
            cluster.StartPodAsync("backend-1", "backend", "backend"), cluster.StartPodAsync("canary-1", "canary", "backend-canary"),
            cluster.StartPodAsync("client-1", "client", "client"));
        cluster.Slice("backend", stable);
        cluster.Slice("backend-canary", canary);
        await client.WaitForEndpointsAsync("backend", stable);
        await client.WaitForEndpointsAsync("backend-canary", canary);

        // Issue 18: each pod's sidecar holds an SVID for its own service account, signed under the root in the Secret.
        using var root = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(
            Certificates.KubernetesCaTests.Decode(cluster.Api.Get("v1", "Secret", Certificates.KubernetesCaTests.Ns, "meshproxy-ca")!, MeshProxy.ControlPlane.Certificates.CaSecrets.RootCert));
        foreach (var pod in new[] { stable, canary, client })
        {
            var certs = await pod.CertsAsync();
            Assert.Equal($"spiffe://{TrustDomain}/ns/shop/sa/{pod.ServiceAccount}", certs.GetProperty("spiffeId").GetString());
            Assert.Equal(root.Subject, certs.GetProperty("chain").EnumerateArray().Last().GetProperty("issuer").GetString());
            Assert.Equal([root.Subject], certs.GetProperty("trustBundle").EnumerateArray().Select(c => c.GetProperty("subject").GetString()));
        }

        await using var load = client.StartLoad(Backend);
        await load.WaitForAnswersFromAsync(5, stable.Name);

        // A GAMMA HTTPRoute on the backend Service sends everything to the canary Service's pods...
        cluster.Api.Apply(Split(0, 100));
        await WaitForSplitAsync(client, "backend-canary=100");
        await load.WaitForAnswersFromAsync(3, canary.Name); // a request routed before the route applied may still be answering
        var before = load.Tally.By;
        await load.WaitForAnswersFromAsync(20, canary.Name);
        Assert.Equal(before.GetValueOrDefault(stable.Name), load.Tally.By.GetValueOrDefault(stable.Name));
        await Eventually.TrueAsync(() => RouteParents(cluster) == "backend Accepted:True ResolvedRefs:True", "the route's status for its Service parent", 30_000);

        // ...then half and half.
        cluster.Api.Apply(Split(50, 50));
        await WaitForSplitAsync(client, "backend=50", "backend-canary=50");
        await load.WaitForAnswersFromAsync(5, stable.Name, canary.Name);

        // A bad object shows Invalid, with field and reason, in its status; traffic keeps flowing on the last good config.
        cluster.Api.Apply(Pool("backend-pool", "soon"));
        await Eventually.TrueAsync(() => Accepted(cluster, "backend-pool") is ("False", "Invalid", var m) && m.StartsWith("spec.connectionPool.tcp.connectTimeout: 'soon' is not a duration", StringComparison.Ordinal),
            $"backend-pool shows Invalid (it says {Accepted(cluster, "backend-pool")})", 30_000);
        await load.WaitForAnswersFromAsync(5, stable.Name, canary.Name);

        // The API server goes away: the sidecars keep their config and the traffic flows. A change made meanwhile (a
        // second canary pod, scheduled before, becoming an endpoint) reaches them once it is back.
        var canary2 = await cluster.StartPodAsync("canary-2", "canary", "backend-canary");
        cluster.Api.SetReachable(false);
        await TestControlPlane.EventuallyAsync(async () => (await ReadyAsync(cluster)).Contains("unreachable", StringComparison.Ordinal), "/ready says the API server is unreachable", TimeSpan.FromSeconds(30));
        await load.WaitForAnswersFromAsync(10, stable.Name, canary.Name);
        cluster.Slice("backend-canary", canary, canary2);
        Assert.Equal([canary.Ip], await client.EndpointsOfAsync("backend-canary"));
        cluster.Api.SetReachable(true);
        await client.WaitForEndpointsAsync("backend-canary", canary, canary2);
        await load.WaitForAnswersFromAsync(5, canary2.Name);

        // Issue 18: a pod presenting another pod's token (client-1's, service account client) for its own identity
        // (intruder) is refused its config stream (the token is bound to client-1, and the stream comes from intruder-1's
        // address: PodBinding's pod_mismatch), and so never asks for a certificate: it is never ready and not served (the
        // CA's own refusal of such a token is CertificateServiceWithGrpcJsTests' and TokenReviewCertificateTests').
        var intruder = await cluster.StartPodAsync("intruder-1", "intruder", "intruder", token: cluster.Api.CreateServiceAccountToken(PodCluster.Ns, "client", pod: client.Name), waitReady: false);
        await Eventually.TrueAsync(() => cluster.Logs.WithEvent(40).Any(l => l.Contains("intruder-1.shop", StringComparison.Ordinal) && l.Contains("(pod_mismatch)", StringComparison.Ordinal)
            && l.Contains($"the token is bound to pod {PodCluster.Ns}/{client.Name} ({client.Ip}) but the request came from {intruder.Ip}", StringComparison.Ordinal)),
            "intruder-1's config stream refused", 60_000);
        var ready = await Run.ProcessAsync("ip", ["netns", "exec", intruder.Namespace.Name, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://127.0.0.1:15020/ready"]);
        Assert.NotEqual("200", ready.Stdout);
        Assert.DoesNotContain(cluster.Logs.Lines, l => l.EventId != 40 && l.Message.Contains("issued", StringComparison.OrdinalIgnoreCase) && l.Message.Contains("/sa/intruder", StringComparison.Ordinal));
        Assert.DoesNotContain((await cluster.ControlPlane.ControlPlane.SynczAsync()).EnumerateArray(), s => s.GetProperty("instanceId").GetString() == "intruder-1.shop");

        var final = await load.StopAsync();
        Assert.True(final.Failed == 0, $"{final.Failed} failed of {final.Ok + final.Failed}: {string.Join('\n', load.Failures)}");
    }

    private static async Task<(T, T)> Both<T>(Task<T> a, Task<T> b)
    {
        await Task.WhenAll(a, b);
        return (a.Result, b.Result);
    }

    private static async Task<(T, T, T)> Both<T>(Task<T> a, Task<T> b, Task<T> c)
    {
        await Task.WhenAll(a, b, c);
        return (a.Result, b.Result, c.Result);
    }

    /// <summary>Waits until the client's sidecar applied the route: "service=weight" of the backend host's rule, in order (weight 0 ones are left out).</summary>
    private static async Task WaitForSplitAsync(PodCluster.Pod client, params string[] split)
    {
        var rules = "none yet";
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            var backend = (await client.ConfigDumpAsync()).GetProperty("virtualHosts").EnumerateArray()
                .Where(v => v.GetProperty("service").GetString() == "backend.shop.svc.cluster.local").ToList();
            rules = string.Join(", ", backend.Select(v => v.GetProperty("rules").GetRawText()));
            if (backend.SelectMany(v => v.GetProperty("rules").EnumerateArray())
                .Any(r => r.GetProperty("destinations").EnumerateArray().Select(Destination).SequenceEqual(split)))
            {
                return;
            }

            await Task.Delay(100);
        }

        Assert.Fail($"the client's sidecar does not split backend {string.Join(' ', split)}; its rules: {rules}");

        // outbound|80||backend-canary.shop.svc.cluster.local -> backend-canary
        static string Destination(JsonElement d) =>
            $"{d.GetProperty("cluster").GetString()!.Split("||")[1].Split('.')[0]}={d.GetProperty("weight").GetInt32()}";
    }

    private static string RouteParents(PodCluster cluster) =>
        string.Join(", ", (cluster.Api.Get("gateway.networking.k8s.io/v1", "HTTPRoute", PodCluster.Ns, "split")?["status"]?["parents"]?.AsArray() ?? []).Select(p =>
            $"{p!["parentRef"]!["name"]} " + string.Join(' ', p["conditions"]!.AsArray().Select(c => $"{c!["type"]}:{c["status"]}"))));

    private static (string?, string?, string) Accepted(PodCluster cluster, string name)
    {
        var condition = cluster.Api.Get("meshproxy.io/v1alpha1", "DestinationPolicy", PodCluster.Ns, name)?["status"]?["conditions"]?.AsArray().FirstOrDefault(c => (string?)c!["type"] == "Accepted");
        return ((string?)condition?["status"], (string?)condition?["reason"], (string?)condition?["message"] ?? string.Empty);
    }

    private static async Task<string> ReadyAsync(PodCluster cluster)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return await http.GetStringAsync(new Uri(cluster.ControlPlane.ControlPlane.MonitoringUri, "/ready"));
    }

    private static string Split(int stable, int canary) => $$"""
        {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"split","namespace":"shop"},
         "spec":{"parentRefs":[{"group":"","kind":"Service","name":"backend"}],
                 "rules":[{"backendRefs":[{"name":"backend","port":80,"weight":{{stable}}},{"name":"backend-canary","port":80,"weight":{{canary}} }]}]} }
        """;

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
