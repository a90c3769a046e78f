using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.Pods;

/// <summary>
/// Issue 18 item 2 with real sidecar processes: the CA's root in the Secret is rotated (both roots in the bundle, every
/// SVID reissued, the old root dropped) while a load loop runs app to sidecar to sidecar to app, every request on a
/// new mutual-TLS connection between two pods' sidecars; no request fails.
/// <para>
/// Time: the sidecars judge certificates by the wall clock, so they ask for 20 s certificates
/// (MESHPROXY_CERTIFICATE_TTL) and renew every ~10 s. The rotation's schedule runs on a fake clock that the test moves
/// 2 s per 100 ms of real time at most (20x), while the CA believes certificates may live 10 minutes (MeshConfig's
/// shortest): each phase's wait (~15 minutes of that clock) therefore lasts at least 45 s of real time, longer than any
/// certificate issued before the step lives, which is what the product's wait promises in real time. A slow machine
/// only moves the fake clock slower, which keeps the promise. The CA's view of its Secret may be 5 minutes of that clock
/// old (15 s real) and a round's API calls may take 2 (6 s real), so a loaded machine does not stop it signing.
/// </para>
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class RootRotationUnderLoadTests
{
    private const string Backend = "http://backend.shop.svc.cluster.local/";

    [Fact]
    public async Task The_root_rotates_under_load_through_real_sidecars_and_no_request_fails()
    {
        Assert.SkipUnless(Environment.UserName == "root", "needs root: network namespaces, a bridge and iptables");
        var schedule = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var cluster = await PodCluster.StartAsync(ca => ca with { Clock = schedule, ViewTtl = TimeSpan.FromMinutes(5), RequestTimeout = TimeSpan.FromMinutes(2) }, certificateTtl: TimeSpan.FromSeconds(20));
        cluster.Service("backend", "10.96.0.20");
        // One request per upstream connection: every request is a new handshake between the sidecars, both sides verified.
        cluster.Api.Apply("""
            {"apiVersion":"meshproxy.io/v1alpha1","kind":"DestinationPolicy","metadata":{"name":"fresh","namespace":"shop"},
             "spec":{"host":"backend","connectionPool":{"http":{"maxRequestsPerConnection":1}}}}
            """);
        var pods = await Task.WhenAll(
            cluster.StartPodAsync("backend-a", "backend", "backend"), cluster.StartPodAsync("backend-b", "backend", "backend"),
            cluster.StartPodAsync("client-1", "client", "client"));
        var (a, b, client) = (pods[0], pods[1], pods[2]);
        cluster.Slice("backend", a, b);
        await client.WaitForEndpointsAsync("backend", a, b);
        await TestControlPlane.EventuallyAsync(
            async () => (await client.ConfigDumpAsync()).GetProperty("resources").EnumerateArray().Any(r => r.GetProperty("kind").GetString() == "DestinationPolicy"),
            "the client's sidecar applied the policy", TimeSpan.FromSeconds(30));

        using var oldRoot = X509Certificate2.CreateFromPem(RootInSecret(cluster));
        foreach (var pod in pods)
        {
            Assert.Equal(oldRoot.Subject, Issuer(await pod.CertsAsync()));
        }

        await using var load = client.StartLoad(Backend);
        await load.WaitForAnswersFromAsync(5, a.Name, b.Name);

        // The operator asks; the Lease holder steps the rotation on its schedule.
        cluster.Api.ApplyRaw("v1", "Secret", KubernetesCaTests.Ns, "meshproxy-ca", s =>
        {
            s["metadata"]!["annotations"] = new JsonObject { [CaSecrets.RotateAnnotation] = "now" };
            return s;
        });
        var phases = new List<string> { "none" };
        var bundleSizes = new HashSet<int>();
        for (var step = 0; step < 4000 && !(phases.Contains("switched") && phases[^1] == "none"); step++)
        {
            schedule.Advance(TimeSpan.FromSeconds(2));
            await Task.Delay(100, TestContext.Current.CancellationToken);
            if (Phase(cluster) is var phase && phase != phases[^1])
            {
                phases.Add(phase);
            }

            if (step % 10 == 0)
            {
                await cluster.SyncTrustBundleFilesAsync();
                bundleSizes.Add((await client.CertsAsync()).GetProperty("trustBundle").GetArrayLength());
            }
        }

        Assert.Equal(["none", "adding", "switched", "none"], phases);
        Assert.Contains(2, bundleSizes); // the client's sidecar held both roots at some point
        var newRootPem = RootInSecret(cluster);
        using var newRoot = X509Certificate2.CreateFromPem(newRootPem);
        Assert.NotEqual(oldRoot.Subject, newRoot.Subject);

        // Every sidecar ends with an SVID under the new root and a bundle of the new root alone (at its next renewal).
        foreach (var pod in pods)
        {
            await TestControlPlane.EventuallyAsync(
                async () =>
                {
                    await cluster.SyncTrustBundleFilesAsync();
                    var certs = await pod.CertsAsync();
                    return Issuer(certs) == newRoot.Subject && certs.GetProperty("trustBundle").EnumerateArray().Select(c => c.GetProperty("subject").GetString()).SequenceEqual([newRoot.Subject]);
                },
                $"{pod.Name}'s SVID under the new root, and the new root alone in its bundle", TimeSpan.FromSeconds(60));
        }

        await load.WaitForAnswersFromAsync(5, a.Name, b.Name);
        var final = await load.StopAsync();
        Assert.True(final.Failed == 0, $"{final.Failed} failed of {final.Ok + final.Failed}: {string.Join('\n', load.Failures.Take(5))}");

        // The old root is gone from the Secret, the control plane's bundle and the namespace's ConfigMap.
        var secret = cluster.Api.Get("v1", "Secret", KubernetesCaTests.Ns, "meshproxy-ca")!;
        Assert.Null(secret["data"]![CaSecrets.PreviousRootCert]);
        Assert.Null(secret["data"]![CaSecrets.NextRootCert]);
        Assert.Equal(newRootPem.Trim(), Assert.Single(cluster.ControlPlane.ControlPlane.Host.Certificates!.Authority.Current.BundlePem).Trim());
        await TestControlPlane.EventuallyAsync(() => Task.FromResult(cluster.TrustBundle?.Trim() == newRootPem.Trim()), "the new root alone in shop's ConfigMap", TimeSpan.FromSeconds(30));
        TestContext.Current.TestOutputHelper?.WriteLine($"{final.Ok} requests through the rotation, 0 failed; phases {string.Join(" -> ", phases)}");
    }

    private static string Issuer(System.Text.Json.JsonElement certs) => certs.GetProperty("chain").EnumerateArray().Last().GetProperty("issuer").GetString()!;

    private static string RootInSecret(PodCluster cluster) => KubernetesCaTests.Decode(cluster.Api.Get("v1", "Secret", KubernetesCaTests.Ns, "meshproxy-ca")!, CaSecrets.RootCert);

    private static string Phase(PodCluster cluster) =>
        cluster.Api.Get("v1", "Secret", KubernetesCaTests.Ns, "meshproxy-ca")!["metadata"]!["annotations"]?[CaSecrets.PhaseAnnotation]?.GetValue<string>() ?? "none";
}
