using System.Text.Json.Nodes;
using MeshProxy.Cli.Install;
using MeshProxy.Injection.Hosting;

namespace MeshProxy.ControlPlane.Tests.Install;

/// <summary>
/// What the API server would refuse, or accept and then fail to run, in a set of manifests: each kind's required fields
/// (after the API reference), references between objects (selectors, ports, accounts, roles, volumes, the webhook's
/// Service), and the mesh's own rules (non-root, read-only, no privilege, nothing bound to all interfaces that is not a
/// declared port, no wildcard in RBAC, no caBundle in the manifest). One line per problem.
/// </summary>
internal sealed class ManifestChecker(InstallOptions options, List<JsonObject> objects)
{
    private static readonly HashSet<string> Verbs = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
    private readonly List<string> _problems = [];

    public List<string> Problems()
    {
        foreach (var obj in objects)
        {
            var what = InstallManifestTests.Key(obj);
            if (obj["metadata"]?["name"]?.GetValue<string>() is not { } name || !InstallManifestTests.DnsName().IsMatch(name) || name.Length > 253)
            {
                Problem(what, "metadata.name is missing or not a DNS subdomain");
                continue;
            }

            var kind = InstallManifestTests.Kind(obj);
            var namespaced = kind is not ("Namespace" or "ClusterRole" or "ClusterRoleBinding" or "MutatingWebhookConfiguration" or "CustomResourceDefinition");
            var ns = obj["metadata"]!["namespace"]?.GetValue<string>();
            if (namespaced != (ns is not null) || (ns is not null && ns != options.Namespace))
            {
                Problem(what, namespaced ? $"must be in namespace {options.Namespace}" : "is cluster-scoped: no metadata.namespace");
            }

            switch (kind)
            {
                case "Namespace":
                    Expect(what, name == options.Namespace, $"is not the install's namespace {options.Namespace}");
                    break;
                case "CustomResourceDefinition":
                    Expect(what, S(obj["spec"]?["group"]) is { Length: > 0 } group && name.EndsWith("." + group, StringComparison.Ordinal), "name is not <plural>.<group>");
                    Expect(what, obj["spec"]?["versions"] is JsonArray { Count: > 0 }, "has no versions");
                    break;
                case "ServiceAccount":
                    break;
                case "ClusterRole" or "Role":
                    CheckRules(what, obj);
                    break;
                case "ClusterRoleBinding" or "RoleBinding":
                    CheckBinding(what, obj, kind == "RoleBinding" ? "Role" : "ClusterRole");
                    break;
                case "ConfigMap":
                    Expect(what, obj["data"] is JsonObject { Count: > 0 }, "has no data");
                    break;
                case "Deployment":
                    CheckDeployment(what, obj);
                    break;
                case "Service":
                    CheckService(what, obj);
                    break;
                case "PodDisruptionBudget":
                    Expect(what, obj["spec"]?["maxUnavailable"] is not null || obj["spec"]?["minAvailable"] is not null, "sets neither maxUnavailable nor minAvailable");
                    Expect(what, PodTemplates().Count(t => LabelSelector.Matches(obj["spec"]?["selector"] as JsonObject, t.Labels)) == 1, "selector does not pick exactly one Deployment's pods");
                    break;
                case "MutatingWebhookConfiguration":
                    CheckWebhooks(what, obj);
                    break;
                default:
                    Problem(what, $"no check for kind {kind}: add one to ManifestChecker");
                    break;
            }
        }

        return _problems;
    }

    private void CheckDeployment(string what, JsonObject deployment)
    {
        var spec = deployment["spec"] as JsonObject;
        var template = spec?["template"] as JsonObject;
        var pod = template?["spec"] as JsonObject;
        if (pod is null || spec?["selector"] is not JsonObject selector)
        {
            Problem(what, "has no spec.selector or spec.template.spec");
            return;
        }

        Expect(what, spec["replicas"]?.GetValue<long>() >= 1, "replicas below 1");
        Expect(what, LabelSelector.Matches(selector, Labels(template!["metadata"]?["labels"])) && selector.Count > 0, "selector does not match its pod template");
        Expect(what, Exists("ServiceAccount", S(pod["serviceAccountName"])), $"runs as ServiceAccount '{S(pod["serviceAccountName"])}', which the install does not create");
        Expect(what, pod["securityContext"]?["runAsNonRoot"]?.GetValue<bool>() == true, "pod securityContext.runAsNonRoot is not true");
        Expect(what, pod["securityContext"]?["runAsUser"]?.GetValue<long>() is > 0, "pod securityContext.runAsUser is not a non-root uid");
        Expect(what, pod["hostNetwork"] is null && pod["hostPID"] is null, "uses the host's namespaces");

        var volumes = (pod["volumes"] as JsonArray ?? []).Select(v => v!.AsObject()).ToList();
        foreach (var volume in volumes)
        {
            if (volume["configMap"] is { } configMap)
            {
                Expect(what, Exists("ConfigMap", S(configMap["name"])), $"mounts ConfigMap '{S(configMap["name"])}', which the install does not create");
            }

            if (volume["secret"] is { } secret)
            {
                Expect(what, S(secret["secretName"]) == options.WebhookSecret, $"mounts Secret '{S(secret["secretName"])}', which nothing writes");
            }
        }

        if (pod["containers"] is not JsonArray { Count: > 0 } containers)
        {
            Problem(what, "has no containers");
            return;
        }

        foreach (var container in containers.Select(c => c!.AsObject()))
        {
            var name = $"{what} container {S(container["name"])}";
            Expect(name, S(container["name"]) is { Length: > 0 }, "has no name");
            Expect(name, S(container["image"]) is { Length: > 0 } image && image.Contains(':', StringComparison.Ordinal), "has no image (with a tag)");
            var security = container["securityContext"];
            Expect(name, security?["allowPrivilegeEscalation"]?.GetValue<bool>() == false, "securityContext.allowPrivilegeEscalation is not false");
            Expect(name, security?["readOnlyRootFilesystem"]?.GetValue<bool>() == true, "securityContext.readOnlyRootFilesystem is not true");
            Expect(name, security?["capabilities"]?["drop"] is JsonArray drop && drop.Any(d => S(d) == "ALL"), "does not drop ALL capabilities");
            Expect(name, security?["privileged"] is null && security?["runAsUser"]?.GetValue<long>() is null or > 0, "is privileged or root");

            var ports = (container["ports"] as JsonArray ?? []).Select(p => p!["containerPort"]!.GetValue<long>()).ToHashSet();
            Expect(name, (container["ports"] as JsonArray ?? []).All(p => p!["hostPort"] is null), "uses a hostPort");
            foreach (var probe in new[] { "readinessProbe", "livenessProbe" })
            {
                var port = container[probe]?["httpGet"]?["port"] ?? container[probe]?["tcpSocket"]?["port"];
                Expect(name, port is not null && ports.Contains(port.GetValue<long>()), $"{probe} is missing or probes an undeclared port");
            }

            // Only declared ports listen on every interface; anything else (an admin port) must stay on loopback.
            foreach (var arg in (container["args"] as JsonArray ?? []).Select(S))
            {
                if (arg is not null && System.Net.IPEndPoint.TryParse(arg, out var endpoint) && endpoint.Port > 0 && !System.Net.IPAddress.IsLoopback(endpoint.Address))
                {
                    Expect(name, ports.Contains(endpoint.Port), $"binds {arg}, but {endpoint.Port} is not a declared containerPort: bind it to 127.0.0.1");
                }
            }

            var mounts = (container["volumeMounts"] as JsonArray ?? []).Select(m => S(m!["name"])).ToList();
            Expect(name, mounts.All(m => volumes.Any(v => S(v["name"]) == m)), "mounts a volume the pod does not declare");
        }
    }

    private void CheckService(string what, JsonObject service)
    {
        var selector = Labels(service["spec"]?["selector"]);
        var backends = PodTemplates().Where(t => selector.Count > 0 && selector.All(s => t.Labels.TryGetValue(s.Key, out var v) && v == s.Value)).ToList();
        Expect(what, backends.Count == 1, "selector does not pick exactly one Deployment's pods");
        if (service["spec"]?["ports"] is not JsonArray { Count: > 0 } ports)
        {
            Problem(what, "has no ports");
            return;
        }

        foreach (var port in ports.Select(p => p!.AsObject()))
        {
            Expect(what, port["port"]?.GetValue<long>() is >= 1 and <= 65535 && S(port["name"]) is { Length: > 0 }, "a port has no name or an out-of-range number");
            var target = port["targetPort"]?.GetValue<long>() ?? port["port"]!.GetValue<long>();
            Expect(what, backends.Count == 1 && backends[0].Ports.Contains(target), $"sends targetPort {target}, which no container of its pods declares");
        }
    }

    private void CheckRules(string what, JsonObject role)
    {
        if (role["rules"] is not JsonArray { Count: > 0 } rules)
        {
            Problem(what, "has no rules");
            return;
        }

        foreach (var rule in rules.Select(r => r!.AsObject()))
        {
            var groups = Strings(rule["apiGroups"]);
            var resources = Strings(rule["resources"]);
            var verbs = Strings(rule["verbs"]);
            Expect(what, groups.Count > 0 && resources.Count > 0 && verbs.Count > 0, "a rule lacks apiGroups, resources or verbs");
            Expect(what, !groups.Concat(resources).Concat(verbs).Contains("*"), "a rule grants a wildcard");
            Expect(what, verbs.All(Verbs.Contains), $"unknown verb in [{string.Join(", ", verbs)}]");
            // resourceNames cannot restrict create or deletecollection (the name is not in the URL): such a rule would grant
            // nothing. list and watch they can, for a client that asks with a metadata.name field selector (the RBAC
            // documentation's rule; the trust-bundle publisher asks so).
            Expect(what, rule["resourceNames"] is null || !verbs.Any(v => v is "create" or "deletecollection"), "resourceNames with a verb they cannot restrict");
        }
    }

    private void CheckBinding(string what, JsonObject binding, string roleKind)
    {
        var roleRef = binding["roleRef"];
        Expect(what, S(roleRef?["kind"]) == roleKind && Exists(roleKind, S(roleRef?["name"])), $"roleRef {S(roleRef?["kind"])}/{S(roleRef?["name"])} is not a {roleKind} of the install");
        Expect(what, binding["subjects"] is JsonArray { Count: > 0 } subjects
            && subjects.All(s => S(s!["kind"]) == "ServiceAccount" && S(s["namespace"]) == options.Namespace && Exists("ServiceAccount", S(s["name"]))), "a subject is not a ServiceAccount of the install");
    }

    private void CheckWebhooks(string what, JsonObject configuration)
    {
        if (configuration["webhooks"] is not JsonArray { Count: > 0 } webhooks)
        {
            Problem(what, "has no webhooks");
            return;
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var webhook in webhooks.Select(w => w!.AsObject()))
        {
            var name = S(webhook["name"]) ?? string.Empty;
            var hook = $"{what} webhook {name}";
            Expect(hook, name.Split('.').Length >= 3 && names.Add(name), "name is not a unique fully qualified name");
            Expect(hook, Strings(webhook["admissionReviewVersions"]).Contains("v1"), "does not speak AdmissionReview v1");
            Expect(hook, S(webhook["sideEffects"]) is "None" or "NoneOnDryRun", "sideEffects must be None or NoneOnDryRun");
            Expect(hook, S(webhook["failurePolicy"]) is "Ignore" or "Fail", "failurePolicy is not Ignore or Fail");
            Expect(hook, webhook["rules"] is JsonArray { Count: > 0 }, "has no rules");
            Expect(hook, webhook["namespaceSelector"] is JsonObject && webhook["objectSelector"] is JsonObject, "selects every namespace or every pod");
            var client = webhook["clientConfig"];
            Expect(hook, client?["caBundle"] is null, "sets a caBundle: the control plane fills it from the mesh CA, and a manifest's would overwrite it on every apply");
            Expect(hook, client?["url"] is null, "calls a URL instead of the injector's Service");
            var service = client?["service"];
            var target = objects.SingleOrDefault(o => InstallManifestTests.Kind(o) == "Service" && S(o["metadata"]!["name"]) == S(service?["name"]) && S(o["metadata"]!["namespace"]) == S(service?["namespace"]));
            if (target is null)
            {
                Problem(hook, $"calls Service {S(service?["namespace"])}/{S(service?["name"])}, which the install does not create");
                continue;
            }

            Expect(hook, S(service?["path"]) == WebhookServerOptions.InjectPath, $"path is not the injector's {WebhookServerOptions.InjectPath}");
            var port = target["spec"]!["ports"]!.AsArray().SingleOrDefault(p => p!["port"]!.GetValue<long>() == (service?["port"]?.GetValue<long>() ?? 443));
            Expect(hook, port?["targetPort"]?.GetValue<long>() == WebhookServerOptions.DefaultPort, "the Service port it calls does not reach the injector's listener");
        }
    }

    private List<(Dictionary<string, string> Labels, HashSet<long> Ports)> PodTemplates() =>
        [.. objects.Where(o => InstallManifestTests.Kind(o) == "Deployment").Select(d => (
            Labels(d["spec"]?["template"]?["metadata"]?["labels"]),
            (d["spec"]?["template"]?["spec"]?["containers"] as JsonArray ?? []).SelectMany(c => c!["ports"] as JsonArray ?? []).Select(p => p!["containerPort"]!.GetValue<long>()).ToHashSet()))];

    private bool Exists(string kind, string? name) =>
        name is not null && objects.Any(o => InstallManifestTests.Kind(o) == kind && S(o["metadata"]!["name"]) == name);

    private void Expect(string what, bool ok, string problem)
    {
        if (!ok)
        {
            Problem(what, problem);
        }
    }

    private void Problem(string what, string problem) => _problems.Add($"{what}: {problem}");

    private static Dictionary<string, string> Labels(JsonNode? node) =>
        (node as JsonObject ?? []).ToDictionary(kv => kv.Key, kv => S(kv.Value) ?? string.Empty, StringComparer.Ordinal);

    private static List<string> Strings(JsonNode? node) => [.. (node as JsonArray ?? []).Select(n => S(n) ?? string.Empty)];

    private static string? S(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
}

/// <summary>A Kubernetes label selector (matchLabels and matchExpressions, ANDed), as the API server evaluates it.</summary>
internal static class LabelSelector
{
    /// <summary>Null or empty selects everything.</summary>
    public static bool Matches(JsonObject? selector, IReadOnlyDictionary<string, string> labels)
    {
        foreach (var (key, value) in selector?["matchLabels"] as JsonObject ?? [])
        {
            if (!labels.TryGetValue(key, out var actual) || actual != value!.GetValue<string>())
            {
                return false;
            }
        }

        foreach (var expression in selector?["matchExpressions"] as JsonArray ?? [])
        {
            var key = expression!["key"]!.GetValue<string>();
            var values = (expression["values"] as JsonArray ?? []).Select(v => v!.GetValue<string>()).ToList();
            var has = labels.TryGetValue(key, out var actual);
            var ok = expression["operator"]!.GetValue<string>() switch
            {
                "In" => has && values.Contains(actual!),
                "NotIn" => !has || !values.Contains(actual!),
                "Exists" => has,
                "DoesNotExist" => !has,
                var op => throw new InvalidOperationException($"unknown operator {op}"),
            };
            if (!ok)
            {
                return false;
            }
        }

        return true;
    }
}
