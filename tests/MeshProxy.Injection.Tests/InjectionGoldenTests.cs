using System.Text;
using System.Text.Json.Nodes;
using MeshProxy.Config.Parsing;
using MeshProxy.Injection.Admission;
using MeshProxy.Injection.Capture;
using MeshProxy.Injection.Manifests;
using MeshProxy.Injection.Tests.Infrastructure;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// Real-world pods through the webhook: the JSONPatch it answers, applied to the pod by an independent
/// RFC 6902 applier, must give the documented result in testdata/*.golden.yaml (regenerate with
/// MESHPROXY_UPDATE_GOLDEN=1 and read the diff).
/// </summary>
public sealed class InjectionGoldenTests
{
    internal static readonly InjectorOptions Options = new()
    {
        SidecarImage = "registry.example/meshproxy/sidecar:0.1.0",
        InitImage = "registry.example/meshproxy/init:0.1.0",
    };

    [Theory]
    [InlineData("multi-container-pod")]
    [InlineData("own-init-containers")]
    [InlineData("exclusions")]
    [InlineData("probes")]
    [InlineData("proxy-config")]
    public void The_patch_applied_to_the_pod_gives_the_documented_result(string name)
    {
        var pod = ReadPod(name);
        var (response, patch) = Review(pod, Options);
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Equal("JSONPatch", response["patchType"]!.GetValue<string>());
        Assert.Null(response["warnings"]);

        var injected = JsonPatch.Apply(pod, patch!);
        var golden = Path.Combine(RepoPaths.TestData("MeshProxy.Injection.Tests"), name + ".golden.yaml");
        if (Environment.GetEnvironmentVariable("MESHPROXY_UPDATE_GOLDEN") == "1")
        {
            File.WriteAllText(golden, YamlJson.WriteDocuments([injected]));
        }

        var expected = YamlJson.ReadDocuments(File.ReadAllText(golden))[0];
        Assert.True(JsonNode.DeepEquals(expected, injected), $"{name}: differs from {golden}:\n{YamlJson.WriteDocuments([injected])}");

        // The patch is what the webhook must send, and the same pod injected twice is left alone.
        var again = new SidecarInjector(Options).Inject(injected.AsObject(), new InjectionTarget("bookinfo"));
        Assert.Equal(InjectionOutcome.AlreadyInjected, again.Outcome);
        var (secondResponse, secondPatch) = Review(injected.AsObject(), Options);
        Assert.True(secondResponse["allowed"]!.GetValue<bool>());
        Assert.Null(secondPatch);
    }

    [Theory]
    [InlineData("host-network", InjectionOutcome.Skipped)]
    [InlineData("already-injected", InjectionOutcome.AlreadyInjected)]
    [InlineData("opted-out", InjectionOutcome.Skipped)]
    public void Pods_that_must_not_change_are_admitted_without_a_patch(string name, InjectionOutcome outcome)
    {
        var pod = ReadPod(name);
        Assert.Equal(outcome, new SidecarInjector(Options).Inject(pod, new InjectionTarget("bookinfo")).Outcome);
        var (response, patch) = Review(pod, Options);
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(patch);
        Assert.Null(response["patchType"]);
        Assert.Null(response["warnings"]);
    }

    [Fact]
    public void The_init_step_goes_first_then_the_native_sidecar_then_the_pods_own_init_containers()
    {
        var pod = Inject("own-init-containers");
        var init = Names(pod["spec"]!["initContainers"]);
        Assert.Equal(["meshproxy-init", "meshproxy", "migrate"], init);
        Assert.Equal(["orders"], Names(pod["spec"]!["containers"]));
        var sidecar = pod["spec"]!["initContainers"]![1]!;
        Assert.Equal("Always", sidecar["restartPolicy"]!.GetValue<string>());
        Assert.Null(sidecar["lifecycle"]); // the startup probe holds the rest; no postStart needed
        Assert.Equal(15020, sidecar["startupProbe"]!["httpGet"]!["port"]!.GetValue<int>());

        // The annotation picked the app port among two, and its protocol.
        var bootstrap = pod["metadata"]!["annotations"]![Annotations.Bootstrap]!.GetValue<string>();
        Assert.Contains("app: { port: 8443, protocol: HTTP2 }", bootstrap);
        var args = Strings(pod["spec"]!["initContainers"]![0]!["args"]);
        Assert.Equal([8443], CaptureSettings.FromInitArgs(args, out _).IncludeInboundPorts!);
    }

    [Fact]
    public void A_classic_sidecar_is_the_first_container_and_holds_the_app_until_ready()
    {
        var pod = Inject("exclusions");
        Assert.Equal(["meshproxy-init"], Names(pod["spec"]!["initContainers"]));
        Assert.Equal(["meshproxy", "checkout"], Names(pod["spec"]!["containers"]));
        var sidecar = pod["spec"]!["containers"]![0]!;
        Assert.Null(sidecar["restartPolicy"]);
        Assert.Equal(SidecarInjector.WaitCommand, Strings(sidecar["lifecycle"]!["postStart"]!["exec"]!["command"]));
    }

    [Fact]
    public void Exclusion_annotations_become_the_init_steps_arguments_and_its_rules()
    {
        var pod = Inject("exclusions");
        var args = Strings(pod["spec"]!["initContainers"]![0]!["args"]);
        var settings = CaptureSettings.FromInitArgs(args, out var dryRun);
        Assert.False(dryRun);
        Assert.Null(settings.IncludeInboundPorts);
        Assert.Equal([9090], settings.ExcludeInboundPorts);
        Assert.Equal([5432, 6379], settings.ExcludeOutboundPorts);

        var rules = IptablesRules.Build(settings).Split('\n');
        Assert.Contains("-A MESHPROXY_OUTPUT -p tcp --dport 5432 -j RETURN", rules);
        Assert.Contains("-A MESHPROXY_OUTPUT -p tcp --dport 6379 -j RETURN", rules);
        Assert.Contains("-A MESHPROXY_OUTPUT -d 169.254.169.254/32 -j RETURN", rules);
        Assert.Contains("-A MESHPROXY_OUTPUT -d 10.96.0.0/12 -j MESHPROXY_REDIRECT", rules);
        Assert.Contains("-A MESHPROXY_OUTPUT -d 10.244.0.0/16 -j MESHPROXY_REDIRECT", rules);
        Assert.DoesNotContain("-A MESHPROXY_OUTPUT -j MESHPROXY_REDIRECT", rules); // only the included ranges
        Assert.Contains("-A MESHPROXY_INBOUND -p tcp --dport 9090 -j RETURN", rules);
        Assert.Contains("-A MESHPROXY_INBOUND -p tcp --dport 15020 -j RETURN", rules);
        Assert.Equal(rules.ToList().IndexOf("-A MESHPROXY_INBOUND -p tcp -j MESHPROXY_IN_REDIRECT"), rules.ToList().FindLastIndex(l => l.StartsWith("-A MESHPROXY_INBOUND")));

        // The app's own scrape annotations are kept.
        Assert.Equal("9090", pod["metadata"]!["annotations"]!["prometheus.io/port"]!.GetValue<string>());
    }

    [Fact]
    public void Resources_come_from_annotations_and_the_gc_heap_limit_is_a_share_of_the_memory_limit_in_hex()
    {
        var sidecar = Inject("exclusions")["spec"]!["containers"]![0]!;
        Assert.Equal("250m", sidecar["resources"]!["requests"]!["cpu"]!.GetValue<string>());
        Assert.Equal("200Mi", sidecar["resources"]!["requests"]!["memory"]!.GetValue<string>());
        Assert.Equal("1Gi", sidecar["resources"]!["limits"]!["memory"]!.GetValue<string>());
        Assert.Null(sidecar["resources"]!["limits"]!["cpu"]);
        // 60% of 1 GiB = 644245094 bytes = 0x26666666, written without "0x", which Native AOT's runtime would ignore.
        Assert.Equal("26666666", Env(sidecar, "DOTNET_GCHeapHardLimit"));

        var defaults = Inject("multi-container-pod")["spec"]!["initContainers"]![1]!;
        Assert.Equal("256Mi", defaults["resources"]!["limits"]!["memory"]!.GetValue<string>());
        Assert.Equal("C000000", Env(defaults, "DOTNET_GCHeapHardLimit")); // 75% of 256 MiB = 192 MiB

        // With a heap limit, the concurrent GC: the build's non-concurrent GC crashes near the limit (dotnet/runtime#129681).
        Assert.Equal("1", Env(sidecar, "DOTNET_gcConcurrent"));
        Assert.Equal("1", Env(defaults, "DOTNET_gcConcurrent"));
    }

    [Theory]
    [InlineData("64Mi", null, "'64Mi' is too small for the sidecar: at sidecar.meshproxy.io/gcHeapHardLimitPercent 75 its GC heap would get 48 MiB and the rest of the process (code, thread stacks, socket buffers) 16 MiB, and each needs at least 32 MiB; use at least 128Mi")]
    [InlineData("100Mi", "75", "rest of the process (code, thread stacks, socket buffers) 25 MiB, and each needs at least 32 MiB; use at least 128Mi")]
    [InlineData("256Mi", "10", "its GC heap would get 25.6 MiB and the rest of the process (code, thread stacks, socket buffers) 230.4 MiB, and each needs at least 32 MiB; use at least 320Mi")]
    [InlineData("48M", "50", "its GC heap would get 22.9 MiB and the rest of the process (code, thread stacks, socket buffers) 22.9 MiB, and each needs at least 32 MiB; use at least 64Mi")]
    public void A_memory_limit_too_small_for_the_sidecar_is_refused_with_the_smallest_that_runs(string limit, string? percent, string reason)
    {
        var refused = Assert.Throws<InjectionException>(() => new SidecarInjector(Options).Inject(PodWithMemoryLimit(limit, percent), new InjectionTarget("shop")));
        Assert.StartsWith("sidecar.meshproxy.io/proxyMemoryLimit: ", refused.Message);
        Assert.Contains(reason, refused.Message);
    }

    [Theory]
    [InlineData("128Mi", null, "6000000")] // 75 %: 96 MiB heap, 32 MiB for the rest
    [InlineData("64Mi", "50", "2000000")] // 32 MiB each
    [InlineData("320Mi", "10", "2000000")]
    public void The_smallest_memory_limits_that_leave_both_parts_their_floor_are_injected(string limit, string? percent, string heapHex)
    {
        var injected = new SidecarInjector(Options).Inject(PodWithMemoryLimit(limit, percent), new InjectionTarget("shop")).Pod;
        var sidecar = injected["spec"]!["initContainers"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == SidecarInjector.SidecarContainerName)!;
        Assert.Equal(heapHex, Env(sidecar, "DOTNET_GCHeapHardLimit"));
        Assert.Equal("1", Env(sidecar, "DOTNET_gcConcurrent"));
    }

    private static JsonObject PodWithMemoryLimit(string limit, string? percent)
    {
        var annotations = new JsonObject { ["sidecar.meshproxy.io/proxyMemoryLimit"] = limit };
        if (percent is not null)
        {
            annotations["sidecar.meshproxy.io/gcHeapHardLimitPercent"] = percent;
        }

        return new JsonObject
        {
            ["metadata"] = new JsonObject { ["name"] = "small", ["annotations"] = annotations },
            ["spec"] = new JsonObject { ["containers"] = new JsonArray(new JsonObject { ["name"] = "app" }) },
        };
    }

    [Fact]
    public void The_sidecar_runs_unprivileged_and_only_the_init_step_gets_net_admin_and_net_raw()
    {
        var pod = Inject("multi-container-pod");
        var init = pod["spec"]!["initContainers"]![0]!["securityContext"]!;
        Assert.Equal(["NET_ADMIN", "NET_RAW"], Strings(init["capabilities"]!["add"]));
        Assert.Equal(["ALL"], Strings(init["capabilities"]!["drop"]));
        var sidecar = pod["spec"]!["initContainers"]![1]!["securityContext"]!;
        Assert.Equal(1337, sidecar["runAsUser"]!.GetValue<int>());
        Assert.Equal(1337, sidecar["runAsGroup"]!.GetValue<int>());
        Assert.True(sidecar["runAsNonRoot"]!.GetValue<bool>());
        Assert.True(sidecar["readOnlyRootFilesystem"]!.GetValue<bool>());
        Assert.False(sidecar["allowPrivilegeEscalation"]!.GetValue<bool>());
        Assert.Equal(["ALL"], Strings(sidecar["capabilities"]!["drop"]));
        Assert.Null(sidecar["capabilities"]!["add"]);

        var volumes = pod["spec"]!["volumes"]!.AsArray();
        Assert.Equal("Memory", volumes.Single(v => v!["name"]!.GetValue<string>() == "meshproxy-certs")!["emptyDir"]!["medium"]!.GetValue<string>());
        Assert.Equal("Memory", volumes.Single(v => v!["name"]!.GetValue<string>() == "meshproxy-snapshot")!["emptyDir"]!["medium"]!.GetValue<string>());
        Assert.Equal("meshproxy", volumes.Single(v => v!["name"]!.GetValue<string>() == "meshproxy-token")!["projected"]!["sources"]![0]!["serviceAccountToken"]!["audience"]!.GetValue<string>());
    }

    [Fact]
    public void The_bootstrap_annotation_is_a_valid_sidecar_resource_for_the_derived_workload()
    {
        var pod = Inject("multi-container-pod");
        var bootstrap = pod["metadata"]!["annotations"]![Annotations.Bootstrap]!.GetValue<string>();
        var parsed = ResourceParser.ParseText(bootstrap, "bootstrap.yaml");
        Assert.Empty(parsed.Errors);
        Assert.Contains("name: \"reviews-v1\"", bootstrap); // the Deployment's name, not the ReplicaSet's
        Assert.Contains("serviceAccount: \"bookinfo-reviews\"", bootstrap);
        Assert.Contains("namespace: \"bookinfo\"", bootstrap);
        Assert.Contains("app: { port: 9080, protocol: HTTP }", bootstrap);
        Assert.Equal("reviews-v1", Env(pod["spec"]!["initContainers"]![1]!, "MESHPROXY_WORKLOAD"));
    }

    [Fact]
    public void The_patch_points_the_sidecar_at_tls_15012_with_the_mounted_trust_bundle_as_ca_file()
    {
        // From the patch itself, as the API server would apply it.
        var pod = ReadPod("multi-container-pod");
        var (_, patch) = Review(pod, new InjectorOptions());
        var injected = JsonPatch.Apply(pod, patch!);
        var sidecar = injected["spec"]!["initContainers"]![1]!;
        Assert.Equal("https://meshproxy-controlplane.meshproxy-system.svc:15012", Env(sidecar, MeshProxy.Config.Resources.SidecarEnvironment.ControlPlane));

        var bootstrap = ResourceParser.ParseText(injected["metadata"]!["annotations"]![Annotations.Bootstrap]!.GetValue<string>(), "bootstrap.yaml");
        Assert.Empty(bootstrap.Errors);
        var controlPlane = bootstrap.OfKind<MeshProxy.Config.Resources.SidecarResource>().Single().Spec.ControlPlane!;
        Assert.Equal("https://meshproxy-controlplane.meshproxy-system.svc:15012", controlPlane.Address);
        Assert.Equal("/var/run/secrets/meshproxy/ca/root-cert.pem", controlPlane.CaFile);
        Assert.Equal("/var/run/secrets/meshproxy/tokens/token", controlPlane.TokenFile);

        // caFile is the ConfigMap's key, mounted read-only where caFile says.
        var mount = sidecar["volumeMounts"]!.AsArray().Single(m => m!["name"]!.GetValue<string>() == "meshproxy-ca-root-cert")!;
        Assert.Equal("/var/run/secrets/meshproxy/ca", mount["mountPath"]!.GetValue<string>());
        Assert.True(mount["readOnly"]!.GetValue<bool>());
        var volume = injected["spec"]!["volumes"]!.AsArray().Single(v => v!["name"]!.GetValue<string>() == "meshproxy-ca-root-cert")!;
        Assert.Equal("meshproxy-ca-root-cert", volume["configMap"]!["name"]!.GetValue<string>());
        Assert.Equal("root-cert.pem", volume["configMap"]!["items"]![0]!["key"]!.GetValue<string>());
        Assert.Equal("root-cert.pem", volume["configMap"]!["items"]![0]!["path"]!.GetValue<string>());
        Assert.Null(volume["configMap"]!["optional"]);
        Assert.DoesNotContain(":15010", injected.ToJsonString(), StringComparison.Ordinal);

        // An operator who points sidecars at a plaintext control plane on purpose gets no caFile (nothing to check).
        var (_, plainPatch) = Review(ReadPod("multi-container-pod"), new InjectorOptions { ControlPlaneAddress = "http://cp.example:15010" });
        var plain = JsonPatch.Apply(ReadPod("multi-container-pod"), plainPatch!);
        Assert.DoesNotContain("caFile", plain["metadata"]!["annotations"]![Annotations.Bootstrap]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public void Annotation_keys_with_slashes_are_escaped_in_the_patch_paths()
    {
        var (_, patch) = Review(ReadPod("exclusions"), Options);
        var paths = patch!.Select(op => op!["path"]!.GetValue<string>()).ToList();
        Assert.Contains("/metadata/annotations/sidecar.meshproxy.io~1status", paths);
        Assert.Contains("/spec/containers/0", paths); // an insertion, not a rewrite of the app's container
        Assert.DoesNotContain(paths, p => p == "/spec/containers");
    }

    internal static JsonObject ReadPod(string name) =>
        YamlJson.ReadDocuments(File.ReadAllText(Path.Combine(RepoPaths.TestData("MeshProxy.Injection.Tests"), name + ".yaml")))[0]!.AsObject();

    internal static (JsonObject Response, JsonArray? Patch) Review(JsonObject pod, InjectorOptions options, string operation = "CREATE")
    {
        var reply = new AdmissionReviewHandler(new SidecarInjector(options)).Handle(Encoding.UTF8.GetBytes(ReviewJson(pod, operation)));
        Assert.Equal(200, reply.StatusCode);
        return ParseReply(reply.Body);
    }

    internal static (JsonObject Response, JsonArray? Patch) ParseReply(string body)
    {
        var review = JsonNode.Parse(body)!.AsObject();
        Assert.Equal("admission.k8s.io/v1", review["apiVersion"]!.GetValue<string>());
        Assert.Equal("AdmissionReview", review["kind"]!.GetValue<string>());
        var response = review["response"]!.AsObject();
        Assert.Equal("6a9b2c3d-1111-4222-8333-444455556666", response["uid"]!.GetValue<string>());
        var patch = response["patch"] is { } p ? JsonNode.Parse(Convert.FromBase64String(p.GetValue<string>()))!.AsArray() : null;
        return (response, patch);
    }

    internal static string ReviewJson(JsonNode? pod, string operation = "CREATE", string kind = "Pod") => new JsonObject
    {
        ["apiVersion"] = "admission.k8s.io/v1",
        ["kind"] = "AdmissionReview",
        ["request"] = new JsonObject
        {
            ["uid"] = "6a9b2c3d-1111-4222-8333-444455556666",
            ["kind"] = new JsonObject { ["group"] = "", ["version"] = "v1", ["kind"] = kind },
            ["resource"] = new JsonObject { ["group"] = "", ["version"] = "v1", ["resource"] = "pods" },
            ["namespace"] = "bookinfo",
            ["operation"] = operation,
            ["userInfo"] = new JsonObject { ["username"] = "system:serviceaccount:kube-system:replicaset-controller" },
            ["object"] = pod?.DeepClone(),
            ["dryRun"] = false,
        },
    }.ToJsonString();

    private static JsonObject Inject(string name)
    {
        var result = new SidecarInjector(Options).Inject(ReadPod(name), new InjectionTarget("bookinfo"));
        Assert.Equal(InjectionOutcome.Injected, result.Outcome);
        return result.Pod;
    }

    private static string[] Names(JsonNode? list) => list!.AsArray().Select(c => c!["name"]!.GetValue<string>()).ToArray();

    private static string[] Strings(JsonNode? list) => list!.AsArray().Select(c => c!.GetValue<string>()).ToArray();

    private static string? Env(JsonNode container, string name) =>
        container["env"]!.AsArray().SingleOrDefault(e => e!["name"]!.GetValue<string>() == name)?["value"]?.GetValue<string>();
}
