using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Snapshots;

namespace MeshProxy.ControlPlane.Tests.Snapshots;

/// <summary>
/// Which PeerAuthentications a workload's snapshot carries: the ones in effect for it (mesh, namespace, workload; at
/// most one each), so that the sidecar resolves its ports from exactly these and a losing policy never reaches it.
/// </summary>
public sealed class PeerAuthenticationSelectionTests
{
    private static string Policy(string ns, string name, string mode, string? matchLabels = null, string? ports = null) => $"""
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: PeerAuthentication
        metadata: {"{"} name: {name}, namespace: {ns} {"}"}
        spec:
        {(matchLabels is null ? string.Empty : $"  selector: {{ matchLabels: {{ {matchLabels} }} }}\n")}  mtls: {"{"} mode: {mode} {"}"}
        {(ports is null ? string.Empty : $"  portLevelMtls: {{ {ports} }}\n")}
        """;

    private static ConfigState State(string yaml)
    {
        var parsed = ResourceParser.ParseText(yaml, "peer.yaml").ThrowIfInvalid();
        return ConfigState.Empty with { Generation = 1, Resources = [.. parsed.Resources.Select(r => new StoredResource(r, string.Empty, "v"))] };
    }

    private static List<StoredResource> Snapshot(ConfigState state, string ns, params (string Key, string Value)[] labels) =>
        WorkloadSelector.Select(state, new Workload("w", ns, "w", labels.ToDictionary(l => l.Key, l => l.Value)));

    private static string[] Selected(List<StoredResource> snapshot) =>
        [.. snapshot.Where(r => r.Resource.Kind == PeerAuthenticationResource.KindName).Select(r => r.Key).Order(StringComparer.Ordinal)];

    [Fact]
    public void A_workload_gets_the_mesh_namespace_and_workload_policies_in_effect_and_resolves_the_same_modes_from_them()
    {
        var state = State(
            Policy("meshproxy-system", "mesh", "STRICT") +
            Policy("shop", "default", "PERMISSIVE") +
            Policy("shop", "zz-second-default", "DISABLE") +
            Policy("shop", "billing", "UNSET", "app: billing", "8080: { mode: DISABLE }") +
            Policy("shop", "store", "STRICT", "app: store") +
            Policy("other", "default", "DISABLE"));

        var billing = Snapshot(state, "shop", ("app", "billing"));
        Assert.Equal(["PeerAuthentication/meshproxy-system/mesh", "PeerAuthentication/shop/billing", "PeerAuthentication/shop/default"], Selected(billing));
        Assert.Equal(["PeerAuthentication/meshproxy-system/mesh", "PeerAuthentication/shop/default", "PeerAuthentication/shop/store"], Selected(Snapshot(state, "shop", ("app", "store"))));
        Assert.Equal(["PeerAuthentication/meshproxy-system/mesh", "PeerAuthentication/other/default"], Selected(Snapshot(state, "other", ("app", "billing"))));
        Assert.Equal(["PeerAuthentication/meshproxy-system/mesh"], Selected(Snapshot(state, "empty")));

        // What the sidecar resolves from its snapshot is what the whole set resolves to.
        var all = state.Resources.Select(r => r.Resource).OfType<PeerAuthenticationResource>().ToList();
        var sent = billing.Select(r => r.Resource).OfType<PeerAuthenticationResource>().ToList();
        var labels = new Dictionary<string, string> { ["app"] = "billing" };
        foreach (var port in new[] { 8080, 9090 })
        {
            Assert.Equal(PeerAuthenticationResolver.Resolve(all, "shop", labels, null).For(port), PeerAuthenticationResolver.Resolve(sent, "shop", labels, null).For(port));
        }

        Assert.Equal(new MtlsSetting(MtlsMode.Disable, "PeerAuthentication/shop/billing portLevelMtls[8080]"), PeerAuthenticationResolver.Resolve(sent, "shop", labels, null).For(8080));
        Assert.Equal(new MtlsSetting(MtlsMode.Permissive, "PeerAuthentication/shop/default"), PeerAuthenticationResolver.Resolve(sent, "shop", labels, null).For(9090));
    }

    [Fact]
    public void The_root_namespace_is_the_one_MeshConfig_names()
    {
        var state = State("""
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec: { rootNamespace: istio-system }

            """ + Policy("istio-system", "mesh", "PERMISSIVE") + Policy("meshproxy-system", "not-root-any-more", "DISABLE"));

        Assert.Equal(["PeerAuthentication/istio-system/mesh"], Selected(Snapshot(state, "shop")));
    }
}
