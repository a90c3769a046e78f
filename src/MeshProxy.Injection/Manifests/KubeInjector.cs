using System.Text.Json.Nodes;
using YamlDotNet.Core;

namespace MeshProxy.Injection.Manifests;

/// <summary>One document's fate in <see cref="KubeInjector.Transform"/>.</summary>
public sealed record KubeInjectReport(int Document, string Kind, string Name, InjectionOutcome? Outcome, string Detail);

public sealed record KubeInjectResult(string Yaml, IReadOnlyList<KubeInjectReport> Reports);

/// <summary>
/// Offline injection, like <c>istioctl kube-inject</c>: every Pod, and every pod template of a
/// Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob, gets what the webhook would add;
/// other documents pass through. A document that asks for something impossible stops the whole
/// transformation (a half-injected file is worse than none).
/// </summary>
public sealed class KubeInjector(InjectorOptions options)
{
    private readonly SidecarInjector _injector = new(options);

    public KubeInjectResult Transform(string yaml)
    {
        List<JsonNode?> documents;
        try
        {
            documents = YamlJson.ReadDocuments(yaml);
        }
        catch (YamlException ex)
        {
            throw new InjectionException($"line {ex.Start.Line}, column {ex.Start.Column}: {ex.Message}");
        }

        var reports = new List<KubeInjectReport>();
        for (var i = 0; i < documents.Count; i++)
        {
            if (documents[i] is not JsonObject document)
            {
                continue;
            }

            var kind = (document["kind"] as JsonValue)?.ToString() ?? string.Empty;
            var name = (document["metadata"]?["name"] as JsonValue)?.ToString() ?? string.Empty;
            var ns = (document["metadata"]?["namespace"] as JsonValue)?.ToString() ?? "default";
            var (parent, key) = kind switch
            {
                "Pod" => ((JsonObject?)null, (string?)null),
                "Deployment" or "StatefulSet" or "DaemonSet" or "ReplicaSet" or "Job" => (document["spec"] as JsonObject, "template"),
                "CronJob" => (document["spec"]?["jobTemplate"]?["spec"] as JsonObject, "template"),
                _ => (null, null),
            };
            if (kind != "Pod" && key is null)
            {
                reports.Add(new KubeInjectReport(i, kind, name, null, "not a workload: unchanged"));
                continue;
            }

            var pod = kind == "Pod" ? document : parent?[key!] as JsonObject;
            if (pod is null)
            {
                throw new InjectionException($"document {i + 1} ({kind} {name}): has no pod template");
            }

            InjectionResult result;
            try
            {
                result = _injector.Inject(pod, new InjectionTarget(ns, kind == "Pod" ? null : name));
            }
            catch (Exception ex) when (ex is InjectionException or InvalidOperationException or FormatException)
            {
                throw new InjectionException($"document {i + 1} ({kind} {name}): {ex.Message}");
            }

            if (result.Outcome == InjectionOutcome.Injected)
            {
                if (kind == "Pod")
                {
                    documents[i] = result.Pod;
                }
                else
                {
                    parent![key!] = result.Pod;
                }
            }

            reports.Add(new KubeInjectReport(i, kind, name, result.Outcome, result.Reason));
        }

        return new KubeInjectResult(YamlJson.WriteDocuments(documents), reports);
    }
}
