using YamlDotNet.RepresentationModel;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// TEST INFRASTRUCTURE: the control plane's RBAC as (group, resource, verb) triples, as granted by
/// docker/kubernetes/rbac.yaml's ClusterRole and as asked by the requests the fake API server recorded, so that a test
/// can check the two are equal: nothing asked is refused, nothing granted goes unused.
/// </summary>
internal static class RbacRules
{
    /// <summary>What the requests (as <see cref="FakeKubernetesApiServer.Requests"/> records them) needed.</summary>
    public static HashSet<(string Group, string Resource, string Verb)> Asked(IEnumerable<string> requests) => requests.Select(r =>
    {
        var (method, target) = (r.Split(' ')[0], r.Split(' ')[1]);
        var path = target.Split('?')[0].Trim('/').Split('/');
        var (group, rest) = path[0] == "api" ? ("", path[2..]) : (path[1], path[3..]);
        var resource = rest switch
        {
            ["namespaces", _, var plural, _, "status"] => plural + "/status",
            [var plural, _, "status"] => plural + "/status",
            ["namespaces", _, var plural, ..] => plural,
            _ => rest[0],
        };
        var verb = method switch
        {
            "GET" when target.Contains("watch=true", StringComparison.Ordinal) => "watch",
            "GET" when resource.EndsWith("/status", StringComparison.Ordinal) => "get", // a subresource is one object's
            "GET" when rest.Length % 2 == 1 => "list",
            "GET" => "get",
            // The HTTP verbs of writes are not RBAC's.
            "POST" => "create",
            "PUT" => "update",
            var m => m.ToLowerInvariant(),
        };
        return (group, resource, verb);
    }).ToHashSet();

    /// <summary>Every (group, resource, verb) the ClusterRole in docker/kubernetes/rbac.yaml grants.</summary>
    public static HashSet<(string Group, string Resource, string Verb)> Granted()
    {
        var rbac = new YamlStream();
        rbac.Load(new StringReader(File.ReadAllText(Path.Combine(RepoPaths.Root, "docker", "kubernetes", "rbac.yaml"))));
        return rbac.Documents
            .Select(d => (YamlMappingNode)d.RootNode)
            .Where(d => d.Children[new YamlScalarNode("kind")].ToString() == "ClusterRole")
            .SelectMany(d => ((YamlSequenceNode)d.Children[new YamlScalarNode("rules")]).Children)
            .Cast<YamlMappingNode>()
            .SelectMany(rule =>
                from g in Strings(rule, "apiGroups")
                from res in Strings(rule, "resources")
                from v in Strings(rule, "verbs")
                select (g, res, v))
            .ToHashSet();

        static IEnumerable<string> Strings(YamlMappingNode rule, string key) =>
            ((YamlSequenceNode)rule.Children[new YamlScalarNode(key)]).Children.Select(c => c.ToString());
    }
}
