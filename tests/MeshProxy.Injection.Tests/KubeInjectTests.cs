using System.Text.Json.Nodes;
using MeshProxy.Injection.Manifests;
using MeshProxy.Injection.Tests.Infrastructure;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// kube-inject as a process over a multi-document file: Service untouched; Deployment, Job, CronJob, StatefulSet,
/// DaemonSet templates and a bare Pod injected.
/// </summary>
public sealed class KubeInjectTests
{
    [Fact]
    public async Task Kube_inject_injects_every_pod_template_of_a_multi_document_file()
    {
        var dir = Directory.CreateTempSubdirectory("meshproxy-kube-inject-").FullName;
        try
        {
            var output = Path.Combine(dir, "out.yaml");
            var result = await Run.DotnetAsync("meshproxy-injector", "kube-inject", "-f", Path.Combine(RepoPaths.TestData("MeshProxy.Injection.Tests"), "workloads.yaml"), "-o", output,
                "--sidecar-image", "registry.example/meshproxy/sidecar:0.1.0", "--init-image", "registry.example/meshproxy/init:0.1.0");
            Assert.True(result.Exit == 0, result.Stderr);
            Assert.Contains("Deployment/ratings: injected (native sidecar)", result.Stderr, StringComparison.Ordinal);
            Assert.Contains("CronJob/nightly-report: injected", result.Stderr, StringComparison.Ordinal);
            Assert.Contains("StatefulSet/ledger: injected", result.Stderr, StringComparison.Ordinal);
            Assert.Contains("DaemonSet/node-agent: injected", result.Stderr, StringComparison.Ordinal);
            Assert.Contains("Pod/debug: injected", result.Stderr, StringComparison.Ordinal);

            var text = await File.ReadAllTextAsync(output, TestContext.Current.CancellationToken);
            var golden = Path.Combine(RepoPaths.TestData("MeshProxy.Injection.Tests"), "workloads.golden.yaml");
            if (Environment.GetEnvironmentVariable("MESHPROXY_UPDATE_GOLDEN") == "1")
            {
                File.WriteAllText(golden, text);
            }

            var docs = YamlJson.ReadDocuments(text);
            var expected = YamlJson.ReadDocuments(await File.ReadAllTextAsync(golden, TestContext.Current.CancellationToken));
            Assert.Equal(7, docs.Count);
            Assert.True(JsonNode.DeepEquals(new JsonArray([.. expected]), new JsonArray([.. docs.Select(d => d?.DeepClone())])), "output differs from workloads.golden.yaml:\n" + text);

            // The Service passes through as it was; strings that look like other types stay strings.
            Assert.True(JsonNode.DeepEquals(YamlJson.ReadDocuments(File.ReadAllText(Path.Combine(RepoPaths.TestData("MeshProxy.Injection.Tests"), "workloads.yaml")))[0], docs[0]));
            Assert.Equal("1.0", docs[1]!["spec"]!["template"]!["metadata"]!["labels"]!["version"]!.GetValue<string>());
            Assert.Equal("yes", docs[1]!["spec"]!["template"]!["spec"]!["containers"]![0]!["env"]![0]!["value"]!.GetValue<string>());
            Assert.Equal("0 3 * * *", docs[3]!["spec"]!["schedule"]!.GetValue<string>());

            var job = docs[2]!["spec"]!["template"]!["spec"]!;
            Assert.Equal("meshproxy-init", job["initContainers"]![0]!["name"]!.GetValue<string>());
            Assert.Equal("Always", job["initContainers"]![1]!["restartPolicy"]!.GetValue<string>());
            var cron = docs[3]!["spec"]!["jobTemplate"]!["spec"]!["template"]!;
            Assert.Contains("10.0.0.5/32", cron["spec"]!["initContainers"]![0]!["args"]!.ToJsonString(), StringComparison.Ordinal);
            Assert.Contains("name: \"nightly-report\"", cron["metadata"]!["annotations"]!["sidecar.meshproxy.io/bootstrap"]!.GetValue<string>(), StringComparison.Ordinal);

            // Every pod template got the init step and the sidecar, named after its controller (a bare Pod after itself).
            foreach (var (doc, workload) in new[] { (docs[4]!, "ledger"), (docs[5]!, "node-agent"), (docs[6]!, "debug") })
            {
                var template = doc["kind"]!.GetValue<string>() == "Pod" ? doc : doc["spec"]!["template"]!;
                Assert.Equal(["meshproxy-init", "meshproxy"], template["spec"]!["initContainers"]!.AsArray().Select(c => c!["name"]!.GetValue<string>()));
                Assert.Contains($"name: \"{workload}\"", template["metadata"]!["annotations"]!["sidecar.meshproxy.io/bootstrap"]!.GetValue<string>(), StringComparison.Ordinal);
            }

            // The StatefulSet's grpc readiness probe goes through the sidecar, as the webhook would send it.
            var ledger = docs[4]!["spec"]!["template"]!["spec"]!;
            Assert.Equal("/app-health/ledger/readyz", ledger["containers"]![0]!["readinessProbe"]!["httpGet"]!["path"]!.GetValue<string>());
            var probers = ledger["initContainers"]![1]!["env"]!.AsArray().Single(e => e!["name"]!.GetValue<string>() == "MESHPROXY_APP_PROBERS")!["value"]!.GetValue<string>();
            Assert.Equal("""{"/app-health/ledger/readyz":{"grpc":{"port":50051,"service":"ledger.v1.Ledger"}}}""", probers);

            // Injecting the output again changes nothing.
            var again = await Run.DotnetAsync("meshproxy-injector", "kube-inject", "-f", output);
            Assert.Equal(0, again.Exit);
            Assert.True(JsonNode.DeepEquals(new JsonArray([.. docs.Select(d => d?.DeepClone())]), new JsonArray([.. YamlJson.ReadDocuments(again.Stdout)])));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Kube_inject_of_a_job_asking_to_exit_with_its_app_shares_the_process_namespace_and_rewrites_its_probes()
    {
        const string Yaml = """
            apiVersion: batch/v1
            kind: Job
            metadata: { name: reindex, namespace: search }
            spec:
              template:
                metadata:
                  annotations:
                    sidecar.meshproxy.io/nativeSidecar: "false"
                    sidecar.meshproxy.io/exitOnAppExit: "true"
                spec:
                  restartPolicy: Never
                  containers:
                    - name: reindex
                      image: registry.example/reindex:3.1
                      ports: [{ name: status, containerPort: 8081 }]
                      livenessProbe: { httpGet: { path: /alive, port: status }, periodSeconds: 20 }
            """;
        var result = new KubeInjector(InjectionGoldenTests.Options).Transform(Yaml);
        Assert.Equal(InjectionOutcome.Injected, Assert.Single(result.Reports).Outcome);
        var spec = YamlJson.ReadDocuments(result.Yaml)[0]!["spec"]!["template"]!["spec"]!;
        Assert.True(spec["shareProcessNamespace"]!.GetValue<bool>());
        var sidecar = spec["containers"]![0]!;
        Assert.Equal("meshproxy", sidecar["name"]!.GetValue<string>());
        var env = sidecar["env"]!.AsArray().ToDictionary(e => e!["name"]!.GetValue<string>(), e => e!["value"]?.GetValue<string>());
        Assert.Equal("true", env["MESHPROXY_EXIT_ON_APP_EXIT"]);
        Assert.Equal("""{"/app-health/reindex/livez":{"httpGet":{"path":"/alive","port":8081,"scheme":"HTTP"}}}""", env["MESHPROXY_APP_PROBERS"]);
        Assert.Equal("/app-health/reindex/livez", spec["containers"]![1]!["livenessProbe"]!["httpGet"]!["path"]!.GetValue<string>());

        // A Job whose pod restarts failed containers is refused the mode, with the reason.
        var refused = Assert.Throws<InjectionException>(() => new KubeInjector(InjectionGoldenTests.Options).Transform(Yaml.Replace("restartPolicy: Never", "restartPolicy: OnFailure", StringComparison.Ordinal)));
        Assert.Contains("document 1 (Job reindex): sidecar.meshproxy.io/exitOnAppExit: needs the pod's restartPolicy to be Never, not OnFailure", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("a: { b: c\nd:\n", "line 2: not valid YAML: cannot be read past this point (InvalidOperationException)")]
    [InlineData("a: &a [*a]\n", "line 1: not valid here: nested deeper than 100 levels once aliases are expanded")]
    public void A_manifest_that_is_not_yaml_is_refused_with_its_line_not_an_exception_from_the_yaml_reader(string manifest, string message)
    {
        // The first used to escape as InvalidOperationException; the second would recurse until the stack overflowed.
        var refused = Assert.Throws<InjectionException>(() => new KubeInjector(InjectionGoldenTests.Options).Transform(manifest));
        Assert.StartsWith(message, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Kube_inject_passes_a_templates_proxy_config_to_its_sidecar_and_refuses_a_bad_one_naming_the_field()
    {
        const string Yaml = """
            apiVersion: apps/v1
            kind: Deployment
            metadata: { name: api, namespace: shop }
            spec:
              selector: { matchLabels: { app: api } }
              template:
                metadata:
                  labels: { app: api }
                  annotations:
                    proxy.meshproxy.io/config: |
                      drainDuration: 30s
                      listeners: { outbound: 15201 }
                spec:
                  containers: [{ name: api, image: registry.example/api:1, ports: [{ containerPort: 8080 }] }]
            """;
        var dir = Directory.CreateTempSubdirectory("meshproxy-kube-inject-").FullName;
        try
        {
            var input = Path.Combine(dir, "api.yaml");
            await File.WriteAllTextAsync(input, Yaml, TestContext.Current.CancellationToken);
            var result = await Run.DotnetAsync("meshproxy-injector", "kube-inject", "-f", input);
            Assert.True(result.Exit == 0, result.Stderr);
            var spec = YamlJson.ReadDocuments(result.Stdout)[0]!["spec"]!["template"]!["spec"]!;
            var env = spec["initContainers"]![1]!["env"]!.AsArray().ToDictionary(e => e!["name"]!.GetValue<string>(), e => e!["value"]?.GetValue<string>());
            Assert.Equal("""{"drainDuration":"30s","listeners":{"outbound":15201}}""", env["MESHPROXY_PROXY_CONFIG"]);
            Assert.Contains("--outbound-port 15201", string.Join(' ', spec["initContainers"]![0]!["args"]!.AsArray().Select(a => a!.GetValue<string>())), StringComparison.Ordinal);

            await File.WriteAllTextAsync(input, Yaml.Replace("drainDuration: 30s", "drainDuration: later", StringComparison.Ordinal), TestContext.Current.CancellationToken);
            var refused = await Run.DotnetAsync("meshproxy-injector", "kube-inject", "-f", input);
            Assert.Equal(1, refused.Exit);
            Assert.Contains("document 1 (Deployment api): proxy.meshproxy.io/config:1: drainDuration: 'later' is not a duration", refused.Stderr, StringComparison.Ordinal);
            Assert.Empty(refused.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Kube_inject_reports_bad_yaml_and_bad_annotations_and_exits_1()
    {
        var dir = Directory.CreateTempSubdirectory("meshproxy-kube-inject-").FullName;
        try
        {
            var broken = Path.Combine(dir, "broken.yaml");
            File.WriteAllText(broken, "apiVersion: v1\nkind: Pod\nmetadata: { name: [\n");
            var bad = await Run.DotnetAsync("meshproxy-injector", "kube-inject", "-f", broken);
            Assert.Equal(1, bad.Exit);
            Assert.Contains("line ", bad.Stderr, StringComparison.Ordinal);

            var annotated = Path.Combine(dir, "annotated.yaml");
            File.WriteAllText(annotated, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: { traffic.meshproxy.io/excludeOutboundPorts: \"99999\" }\nspec:\n  containers: [{ name: a, image: a }]\n");
            var refused = await Run.DotnetAsync("meshproxy-injector", "kube-inject", "-f", annotated);
            Assert.Equal(1, refused.Exit);
            Assert.Contains("document 1 (Pod p): traffic.meshproxy.io/excludeOutboundPorts: '99999' is not a port", refused.Stderr, StringComparison.Ordinal);
            Assert.Empty(refused.Stdout);

            var missing = await Run.DotnetAsync("meshproxy-injector", "kube-inject", "-f", Path.Combine(dir, "nope.yaml"));
            Assert.Equal(1, missing.Exit);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
