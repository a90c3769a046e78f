using MeshProxy.ControlPlane.Kubernetes.CustomResources;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.CustomResources;

/// <summary>Least privilege: the shipped ClusterRole grants on the custom kinds exactly what CustomResourceSource uses.</summary>
public sealed class CustomResourceRbacTests
{
    private static readonly string[] CustomGroups = ["meshproxy.io", "security.istio.io", "gateway.networking.k8s.io"];

    [Fact]
    public void The_ClusterRole_grants_list_and_watch_on_each_watched_kind_get_and_patch_on_its_status_and_nothing_else_in_those_groups()
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(File.ReadAllText(Path.Combine(RepoPaths.Root, "docker", "kubernetes", "rbac.yaml"))));
        var role = stream.Documents.Select(d => (YamlMappingNode)d.RootNode).Single(d => d["kind"].ToString() == "ClusterRole");
        var granted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var rule in ((YamlSequenceNode)role["rules"]).Cast<YamlMappingNode>())
        {
            foreach (var group in ((YamlSequenceNode)rule["apiGroups"]).Select(g => g.ToString()).Where(CustomGroups.Contains))
            {
                foreach (var resource in (YamlSequenceNode)rule["resources"])
                {
                    foreach (var verb in (YamlSequenceNode)rule["verbs"])
                    {
                        granted.Add($"{verb} {resource}.{group}");
                    }
                }
            }
        }

        var used = CustomResourceSource.MeshKinds
            .Concat(CustomResourceSource.IstioSecurityKinds)
            .Append(CustomResourceSource.HttpRoutes)
            .Append(CustomResourceSource.GrpcRoutes)
            .SelectMany(k => new[] { $"list {k.Plural}.{k.Group}", $"watch {k.Plural}.{k.Group}", $"get {k.Plural}/status.{k.Group}", $"patch {k.Plural}/status.{k.Group}" })
            .ToHashSet(StringComparer.Ordinal);

        Assert.Empty(used.Except(granted).Order(StringComparer.Ordinal));  // the code would be refused
        Assert.Empty(granted.Except(used).Order(StringComparer.Ordinal));  // granted, never used
    }
}
