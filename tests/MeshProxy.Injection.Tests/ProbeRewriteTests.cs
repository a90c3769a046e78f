using System.Text.Json.Nodes;
using MeshProxy.Injection.Tests.Infrastructure;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// The app's kubelet probes rewritten to the sidecar's /app-health (through the webhook's patch, applied), and the
/// exit-on-app-exit mode for classic sidecars in Job pods.
/// </summary>
public sealed class ProbeRewriteTests
{
    private static readonly InjectorOptions Options = InjectionGoldenTests.Options;

    [Fact]
    public void Http_tcp_and_grpc_probes_go_to_the_sidecar_with_the_originals_and_resolved_ports_in_its_environment()
    {
        var pod = Patched(InjectionGoldenTests.ReadPod("probes"));
        var containers = pod["spec"]!["containers"]!.AsArray();
        var catalog = containers.Single(c => c!["name"]!.GetValue<string>() == "catalog")!;
        var cache = containers.Single(c => c!["name"]!.GetValue<string>() == "cache")!;
        var search = containers.Single(c => c!["name"]!.GetValue<string>() == "search")!;
        var ledger = containers.Single(c => c!["name"]!.GetValue<string>() == "ledger")!;

        AssertRewritten(catalog["livenessProbe"], "/app-health/catalog/livez");
        Assert.Equal(10, catalog["livenessProbe"]!["periodSeconds"]!.GetValue<int>()); // timing and thresholds kept
        Assert.Equal(2, catalog["livenessProbe"]!["timeoutSeconds"]!.GetValue<int>());
        AssertRewritten(catalog["readinessProbe"], "/app-health/catalog/readyz");
        AssertRewritten(catalog["startupProbe"], "/app-health/catalog/startupz");
        Assert.Null(catalog["startupProbe"]!["tcpSocket"]);
        Assert.Equal(30, catalog["startupProbe"]!["failureThreshold"]!.GetValue<int>());
        AssertRewritten(cache["readinessProbe"], "/app-health/cache/readyz");

        // grpc probes, of the whole server or of a named service, become the same httpGet; the grpc action is gone.
        AssertRewritten(search["livenessProbe"], "/app-health/search/livez");
        AssertRewritten(ledger["livenessProbe"], "/app-health/ledger/livez");
        Assert.Equal(10, ledger["livenessProbe"]!["periodSeconds"]!.GetValue<int>());
        AssertRewritten(ledger["readinessProbe"], "/app-health/ledger/readyz");
        Assert.Equal(3, ledger["readinessProbe"]!["timeoutSeconds"]!.GetValue<int>());
        AssertRewritten(ledger["startupProbe"], "/app-health/ledger/startupz");
        Assert.Equal(20, ledger["startupProbe"]!["failureThreshold"]!.GetValue<int>());
        Assert.All(new[] { "livenessProbe", "readinessProbe", "startupProbe" }, field => Assert.Null(ledger[field]!["grpc"]));

        // exec runs inside the container, a probe of another host is not captured.
        var original = InjectionGoldenTests.ReadPod("probes")["spec"]!["containers"]!.AsArray();
        Assert.True(JsonNode.DeepEquals(original[1]!["livenessProbe"], cache["livenessProbe"]));
        Assert.True(JsonNode.DeepEquals(original[2]!["readinessProbe"], search["readinessProbe"]));

        var probers = JsonNode.Parse(SidecarEnv(pod, "MESHPROXY_APP_PROBERS")!)!.AsObject();
        var expected = JsonNode.Parse("""
            {
              "/app-health/catalog/livez": { "httpGet": { "path": "/healthz/live", "port": 8080, "httpHeaders": [{ "name": "X-Probe", "value": "liveness" }], "scheme": "HTTP" }, "timeoutSeconds": 2 },
              "/app-health/catalog/readyz": { "httpGet": { "path": "ready", "port": 9443, "scheme": "HTTPS" } },
              "/app-health/catalog/startupz": { "tcpSocket": { "port": 9443 } },
              "/app-health/cache/readyz": { "tcpSocket": { "port": 6379 } },
              "/app-health/search/livez": { "grpc": { "port": 7070 } },
              "/app-health/ledger/livez": { "grpc": { "port": 50051 } },
              "/app-health/ledger/readyz": { "grpc": { "port": 50051, "service": "ledger.v1.Ledger" }, "timeoutSeconds": 3 },
              "/app-health/ledger/startupz": { "grpc": { "port": 50051, "service": "" } }
            }
            """);
        Assert.True(JsonNode.DeepEquals(expected, probers), probers.ToJsonString());
    }

    [Fact]
    public void The_annotation_turns_the_rewrite_off()
    {
        var input = InjectionGoldenTests.ReadPod("probes");
        input["metadata"]!["annotations"] = new JsonObject { [Annotations.RewriteAppHttpProbers] = "false" };
        var pod = Patched(input);
        var before = input["spec"]!["containers"]!.AsArray();
        var after = pod["spec"]!["containers"]!.AsArray().Where(c => c!["name"]!.GetValue<string>() != SidecarInjector.SidecarContainerName).ToList();
        Assert.True(JsonNode.DeepEquals(new JsonArray([.. before.Select(c => c!.DeepClone())]), new JsonArray([.. after.Select(c => c!.DeepClone())])));
        Assert.Null(SidecarEnv(pod, "MESHPROXY_APP_PROBERS"));
        Assert.Equal("50051", pod["spec"]!["containers"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == "ledger")!["readinessProbe"]!["grpc"]!["port"]!.ToJsonString());
    }

    [Fact]
    public void A_probe_on_a_port_name_the_container_does_not_declare_admits_the_pod_unchanged_with_a_warning()
    {
        var input = InjectionGoldenTests.ReadPod("probes");
        input["spec"]!["containers"]![0]!["livenessProbe"]!["httpGet"]!["port"] = "metrics";
        var (response, patch) = InjectionGoldenTests.Review(input, Options);
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(patch);
        Assert.Contains("container 'catalog' livenessProbe.httpGet.port: 'metrics' is not a named port of the container", response["warnings"]![0]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\"grpc\"", "must be a port number; Kubernetes does not allow named ports in grpc probes")]
    [InlineData("\"50051\"", "must be a port number; Kubernetes does not allow named ports in grpc probes")]
    [InlineData("70000", "70000 is not a port (1-65535)")]
    [InlineData("null", "must be a port number")]
    public void A_grpc_probe_whose_port_is_not_a_number_admits_the_pod_unchanged_with_a_warning_or_is_refused_when_failing_closed(string port, string reason)
    {
        var input = InjectionGoldenTests.ReadPod("probes");
        var ledger = input["spec"]!["containers"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == "ledger")!;
        ledger["readinessProbe"]!["grpc"]!["port"] = JsonNode.Parse(port);
        var (response, patch) = InjectionGoldenTests.Review(input, Options);
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(patch);
        Assert.Contains($"container 'ledger' readinessProbe.grpc.port: {reason}", response["warnings"]![0]!.GetValue<string>(), StringComparison.Ordinal);

        var strict = InjectionGoldenTests.Review(input, Options with { FailClosed = true }).Response;
        Assert.False(strict["allowed"]!.GetValue<bool>());
        Assert.Contains("readinessProbe.grpc.port", strict["status"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public void Exit_on_app_exit_shares_the_process_namespace_and_tells_a_classic_sidecar()
    {
        var pod = Patched(Job(native: false, restartPolicy: "Never"));
        Assert.True(pod["spec"]!["shareProcessNamespace"]!.GetValue<bool>());
        Assert.Equal("true", SidecarEnv(pod, "MESHPROXY_EXIT_ON_APP_EXIT"));
        Assert.Equal(SidecarInjector.SidecarContainerName, pod["spec"]!["containers"]![0]!["name"]!.GetValue<string>());
    }

    [Fact]
    public void Exit_on_app_exit_changes_nothing_for_a_native_sidecar_which_Kubernetes_stops_after_the_app()
    {
        var pod = Patched(Job(native: true, restartPolicy: "Never"));
        Assert.Null(pod["spec"]!["shareProcessNamespace"]);
        Assert.Null(SidecarEnv(pod, "MESHPROXY_EXIT_ON_APP_EXIT"));
    }

    [Theory]
    [InlineData("OnFailure")]
    [InlineData(null)]
    public void Exit_on_app_exit_is_refused_unless_the_pod_never_restarts_its_containers(string? restartPolicy)
    {
        var (response, patch) = InjectionGoldenTests.Review(Job(native: false, restartPolicy), Options);
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(patch);
        Assert.Contains($"{Annotations.ExitOnAppExit}: needs the pod's restartPolicy to be Never, not {restartPolicy ?? "Always"}", response["warnings"]![0]!.GetValue<string>(), StringComparison.Ordinal);

        var strict = InjectionGoldenTests.Review(Job(native: false, restartPolicy), Options with { FailClosed = true }).Response;
        Assert.False(strict["allowed"]!.GetValue<bool>());
    }

    private static JsonObject Job(bool native, string? restartPolicy)
    {
        var spec = new JsonObject { ["containers"] = new JsonArray { new JsonObject { ["name"] = "report", ["image"] = "registry.example/report:1.0" } } };
        if (restartPolicy is not null)
        {
            spec["restartPolicy"] = restartPolicy;
        }

        return new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Pod",
            ["metadata"] = new JsonObject
            {
                ["generateName"] = "nightly-report-",
                ["annotations"] = new JsonObject { [Annotations.ExitOnAppExit] = "true", [Annotations.NativeSidecar] = native ? "true" : "false" },
            },
            ["spec"] = spec,
        };
    }

    /// <summary>The webhook's patch applied to the pod by the independent RFC 6902 applier.</summary>
    private static JsonObject Patched(JsonObject pod)
    {
        var (response, patch) = InjectionGoldenTests.Review(pod, Options);
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(response["warnings"]);
        return JsonPatch.Apply(pod, patch!).AsObject();
    }

    private static void AssertRewritten(JsonNode? probe, string path)
    {
        var httpGet = probe!["httpGet"]!;
        Assert.Equal(path, httpGet["path"]!.GetValue<string>());
        Assert.Equal(15020, httpGet["port"]!.GetValue<int>());
        Assert.Equal("HTTP", httpGet["scheme"]!.GetValue<string>());
        Assert.Null(httpGet["httpHeaders"]);
    }

    private static string? SidecarEnv(JsonObject pod, string name)
    {
        var sidecar = pod["spec"]!["initContainers"]!.AsArray().Concat(pod["spec"]!["containers"]!.AsArray())
            .Single(c => c!["name"]!.GetValue<string>() == SidecarInjector.SidecarContainerName)!;
        return sidecar["env"]!.AsArray().SingleOrDefault(e => e!["name"]!.GetValue<string>() == name)?["value"]?.GetValue<string>();
    }
}
