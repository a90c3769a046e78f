using System.Text.Json.Nodes;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.Pods;

/// <summary>
/// Issue 17's NACK count with real sidecars in pods (<see cref="PodCluster"/>): a RequestAuthentication the control plane
/// accepts and a sidecar refuses. Its inline JWK Set has an EC key of the right shape and sizes (which is all the parser,
/// and so the control plane, can check) whose point is not on P-256: only the sidecar's crypto library tells, and the
/// sidecar NACKs the snapshot naming the resource. The status shows it NACKed by the sidecars it applies to (no
/// selector: all of shop) while traffic keeps flowing on their last good config, and applied when the key is fixed.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class NackStatusTests
{
    private const string Backend = "http://backend.shop.svc.cluster.local/";

    // The schema's example P-256 key (ResourceSchemas), and the same with y's last bits changed: still 32 bytes, off the curve.
    private const string GoodY = "LMAPTe3ZnO2lSOpzTPKFE05feNjhJv7ML1GWCcHd-dg";
    private const string OffCurveY = "LMAPTe3ZnO2lSOpzTPKFE05feNjhJv7ML1GWCcHd-dA";

    [Fact]
    public async Task A_RequestAuthentication_whose_key_the_sidecar_cannot_use_counts_as_nacked_while_traffic_flows_and_as_applied_once_fixed()
    {
        Assert.SkipUnless(Environment.UserName == "root", "needs root: network namespaces, a bridge and iptables");
        await using var cluster = await PodCluster.StartAsync();
        cluster.Service("backend", "10.96.0.20");
        var pods = await Task.WhenAll(cluster.StartPodAsync("backend-1", "backend", "backend"), cluster.StartPodAsync("client-1", "client", "client"));
        var (backend, client) = (pods[0], pods[1]);
        cluster.Slice("backend", backend);
        await client.WaitForEndpointsAsync("backend", backend);

        cluster.Api.Apply(JwtPolicy(OffCurveY));

        // The control plane accepts it; the sidecars it applies to (every one of shop: no selector) refuse it, naming it.
        try
        {
            await Eventually.TrueAsync(() => Sidecars(cluster) is { Nacked: > 0, Applied: 0 }, "issuer's status counts NACKs and no sidecar applied", 60_000);
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"{ex.Message}; its status: {cluster.Api.Get("meshproxy.io/v1alpha1", "RequestAuthentication", PodCluster.Ns, "issuer")?["status"]}"
                + $"\n--- backend's sidecar:\n{string.Join('\n', backend.Sidecar.Output.Split('\n').TakeLast(20))}"
                + $"\n--- control plane:\n{string.Join('\n', cluster.Logs.Lines.TakeLast(30).Select(l => $"{l.EventId} {l.Level} {l.Message}"))}", ex);
        }

        Assert.Equal(("True", "Accepted"), Accepted(cluster));
        Assert.DoesNotContain(Resources(await backend.ConfigDumpAsync()), r => r == "RequestAuthentication/issuer");
        var nacked = Sidecars(cluster)!.Value.Nacked;

        // The backend's sidecar keeps serving its last good config: requests pass.
        var (status, body) = await client.CurlAsync(Backend + "hello");
        Assert.True(status == 200, body);

        // Fixed: every sidecar holding it applies it, none NACKs it.
        cluster.Api.Apply(JwtPolicy(GoodY));
        await Eventually.TrueAsync(() => Sidecars(cluster) is { Nacked: 0 } s && s.Applied == nacked,
            $"issuer's status counts the {nacked} sidecars that NACKed it as applied, and no NACK", 60_000);
        Assert.Contains("RequestAuthentication/issuer", Resources(await backend.ConfigDumpAsync()));
        (status, body) = await client.CurlAsync(Backend + "hello");
        Assert.True(status == 200, body);
    }

    private static List<string> Resources(System.Text.Json.JsonElement dump) =>
        dump.GetProperty("resources").EnumerateArray().Select(r => $"{r.GetProperty("kind").GetString()}/{r.GetProperty("name").GetString()}").ToList();

    private static (int Applied, int Nacked)? Sidecars(PodCluster cluster) =>
        cluster.Api.Get("meshproxy.io/v1alpha1", "RequestAuthentication", PodCluster.Ns, "issuer")?["status"]?["sidecars"] is JsonObject s ? ((int)s["applied"]!, (int)s["nacked"]!) : null;

    private static (string?, string?) Accepted(PodCluster cluster)
    {
        var condition = cluster.Api.Get("meshproxy.io/v1alpha1", "RequestAuthentication", PodCluster.Ns, "issuer")?["status"]?["conditions"]?.AsArray().FirstOrDefault(c => (string?)c!["type"] == "Accepted");
        return ((string?)condition?["status"], (string?)condition?["reason"]);
    }

    private static string JwtPolicy(string y) => new JsonObject
    {
        ["apiVersion"] = "meshproxy.io/v1alpha1",
        ["kind"] = "RequestAuthentication",
        ["metadata"] = new JsonObject { ["name"] = "issuer", ["namespace"] = PodCluster.Ns },
        ["spec"] = new JsonObject
        {
            ["jwtRules"] = new JsonArray(new JsonObject
            {
                ["issuer"] = "https://issuer.example.com",
                ["jwks"] = $$"""{"keys":[{"kty":"EC","crv":"P-256","kid":"ec-1","x":"Ww1DyiyX1fEJpWMqsgzu-jFWp9_RSQSDqve68E3_bJ8","y":"{{y}}"}]}""",
            }),
        },
    }.ToJsonString();
}
