using MeshProxy.Config.Parsing;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Snapshots;

namespace MeshProxy.ControlPlane.Tests.Snapshots;

/// <summary>Which AuthorizationPolicies a workload's snapshot carries: its namespace's (by selector) and the root namespace's.</summary>
public sealed class AuthorizationPolicySelectionTests
{
    private static string Policy(string ns, string name, string? matchLabels) => $"""
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: {"{"} name: {name}, namespace: {ns} {"}"}
        spec:
        {(matchLabels is null ? string.Empty : $"  selector: {{ matchLabels: {{ {matchLabels} }} }}\n")}  action: ALLOW
          rules: [{"{"}{"}"}]

        """;

    private static ConfigState State(string yaml)
    {
        var parsed = ResourceParser.ParseText(yaml, "policies.yaml").ThrowIfInvalid();
        return ConfigState.Empty with { Generation = 1, Resources = [.. parsed.Resources.Select(r => new StoredResource(r, string.Empty, "v"))] };
    }

    private static string[] Selected(ConfigState state, string ns, params (string Key, string Value)[] labels) =>
        [.. WorkloadSelector.Select(state, new Workload("w", ns, "w", labels.ToDictionary(l => l.Key, l => l.Value)))
            .Where(r => r.Resource.Kind == "AuthorizationPolicy")
            .Select(r => r.Key)
            .Order(StringComparer.Ordinal)];

    [Fact]
    public void A_workload_gets_the_policies_of_its_namespace_that_select_it_and_every_root_namespace_policy_that_does()
    {
        var state = State(
            Policy("shop", "billing-only", "app: billing") +
            Policy("shop", "whole-namespace", null) +
            Policy("shop", "billing-v2", "app: billing, version: v2") +
            Policy("other", "elsewhere", null) +
            Policy("meshproxy-system", "mesh-wide", null) +
            Policy("meshproxy-system", "mesh-billing", "app: billing"));

        Assert.Equal(
            ["AuthorizationPolicy/meshproxy-system/mesh-billing", "AuthorizationPolicy/meshproxy-system/mesh-wide", "AuthorizationPolicy/shop/billing-only", "AuthorizationPolicy/shop/whole-namespace"],
            Selected(state, "shop", ("app", "billing"), ("version", "v1")));
        Assert.Equal(
            ["AuthorizationPolicy/meshproxy-system/mesh-wide", "AuthorizationPolicy/shop/whole-namespace"],
            Selected(state, "shop", ("app", "store")));
        Assert.Equal(
            ["AuthorizationPolicy/meshproxy-system/mesh-wide", "AuthorizationPolicy/other/elsewhere"],
            Selected(state, "other"));
    }

    [Fact]
    public void The_root_namespace_is_the_one_MeshConfig_names()
    {
        var state = State("""
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec: { rootNamespace: istio-system }

            """ + Policy("istio-system", "mesh-wide", null) + Policy("meshproxy-system", "not-root-any-more", null));

        Assert.Equal(["AuthorizationPolicy/istio-system/mesh-wide"], Selected(state, "shop"));
    }
}
