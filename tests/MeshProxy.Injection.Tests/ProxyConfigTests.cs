using System.Text;
using System.Text.Json.Nodes;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Injection.Admission;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// proxy.meshproxy.io/config at admission: what reaches the sidecar, what the specific annotations still decide, how
/// the capture follows the merged ports, and how a bad fragment is refused (fail open and fail closed).
/// </summary>
public sealed class ProxyConfigTests
{
    [Fact]
    public void The_fragment_reaches_the_sidecar_less_what_specific_annotations_set_and_the_capture_follows_the_merge()
    {
        var pod = new SidecarInjector(InjectionGoldenTests.Options).Inject(InjectionGoldenTests.ReadPod("proxy-config"), new InjectionTarget("legacy")).Pod;
        var init = pod["spec"]!["initContainers"]!;
        var sidecar = init[1]!;
        var fragment = Env(sidecar, SidecarOverride.EnvironmentVariable);

        // drainDuration is the specific annotation's, so the fragment's 45s is not passed on.
        Assert.Equal("""{"app":{"port":8081,"protocol":"HTTP2"},"listeners":{"outbound":15101,"inbound":15106,"admin":15100}}""", fragment);

        // The init step redirects to the moved listeners and captures the fragment's app port, not the first containerPort.
        var args = string.Join(' ', init[0]!["args"]!.AsArray().Select(a => a!.GetValue<string>()));
        Assert.Contains("--outbound-port 15101 --inbound-port 15106 --include-inbound-ports 8081", args, StringComparison.Ordinal);

        // What the sidecar will run with: its bootstrap merged with the fragment, by the sidecar's own code path.
        var bootstrap = ResourceParser.ParseText(pod["metadata"]!["annotations"]![Annotations.Bootstrap]!.GetValue<string>(), "bootstrap.yaml");
        var merged = SidecarOverrideParser.Parse(fragment!, SidecarOverride.EnvironmentVariable).ThrowIfInvalid().ApplyTo(bootstrap);
        Assert.Empty(merged.Errors);
        var spec = Assert.Single(merged.OfKind<SidecarResource>()).Spec;
        Assert.Equal(TimeSpan.FromSeconds(20), spec.DrainDuration);
        Assert.Equal(new AppSpec(8081, AppProtocol.Http2), spec.App);
        Assert.Equal(ListenerPorts.Default with { Outbound = 15101, Inbound = 15106, Admin = 15100 }, spec.Listeners);
    }

    [Fact]
    public void Specific_app_annotations_win_and_a_fragment_they_empty_adds_nothing()
    {
        var pod = Pod(new()
        {
            [Annotations.ProxyConfig] = """{ "app": { "port": 9090, "protocol": "GRPC" } }""",
            [Annotations.AppPort] = "7070",
            [Annotations.AppProtocol] = "HTTP",
        });
        var injected = new SidecarInjector(InjectionGoldenTests.Options).Inject(pod, new InjectionTarget("shop")).Pod;
        var sidecar = injected["spec"]!["initContainers"]![1]!;
        Assert.Null(Env(sidecar, SidecarOverride.EnvironmentVariable));
        Assert.Contains("app: { port: 7070, protocol: HTTP }", injected["metadata"]!["annotations"]![Annotations.Bootstrap]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("--include-inbound-ports 7070", string.Join(' ', injected["spec"]!["initContainers"]![0]!["args"]!.AsArray().Select(a => a!.GetValue<string>())), StringComparison.Ordinal);
    }

    /// <summary>
    /// app.protocol TCP per pod, as sidecar.meshproxy.io/appProtocol: TCP and meshproxy.io/opaque-ports give it: the
    /// merged Sidecar spec says TCP for the fragment's port, and the capture takes that port inbound.
    /// </summary>
    [Theory]
    [InlineData("""{ "app": { "port": 5432, "protocol": "TCP" } }""", null, """{"app":{"port":5432,"protocol":"TCP"}}""")]
    [InlineData("""{ "app": { "port": 5432, "protocol": "tcp" } }""", null, """{"app":{"port":5432,"protocol":"TCP"}}""")]
    [InlineData("""{ "app": { "port": 5432 } }""", "5432", """{"app":{"port":5432,"protocol":"TCP"}}""")]
    [InlineData("""{ "app": { "port": 5432, "protocol": "HTTP" } }""", "5432", """{"app":{"port":5432,"protocol":"HTTP"}}""")]
    [InlineData("""{ "app": { "port": 5432 } }""", "6379", """{"app":{"port":5432}}""")]
    public void The_fragment_can_make_the_app_port_tcp_as_the_injectors_annotations_can(string fragment, string? opaquePorts, string passedOn)
    {
        var annotations = new Dictionary<string, string> { [Annotations.ProxyConfig] = fragment };
        if (opaquePorts is not null)
        {
            annotations[Annotations.OpaquePorts] = opaquePorts;
        }

        var injected = new SidecarInjector(InjectionGoldenTests.Options).Inject(Pod(annotations), new InjectionTarget("shop")).Pod;
        var init = injected["spec"]!["initContainers"]!;
        var sent = Env(init[1]!, SidecarOverride.EnvironmentVariable);
        Assert.Equal(passedOn, sent);
        Assert.Contains("--include-inbound-ports 5432", string.Join(' ', init[0]!["args"]!.AsArray().Select(a => a!.GetValue<string>())), StringComparison.Ordinal);

        // What the sidecar runs with: the bootstrap (the containerPort 9080, HTTP) merged with what was passed on.
        var bootstrap = ResourceParser.ParseText(injected["metadata"]!["annotations"]![Annotations.Bootstrap]!.GetValue<string>(), "bootstrap.yaml");
        var merged = SidecarOverrideParser.Parse(sent!, SidecarOverride.EnvironmentVariable).ThrowIfInvalid().ApplyTo(bootstrap);
        Assert.Empty(merged.Errors);
        var expected = passedOn.Contains("TCP", StringComparison.Ordinal) ? AppProtocol.Tcp : AppProtocol.Http;
        Assert.Equal(new AppSpec(5432, expected), Assert.Single(merged.OfKind<SidecarResource>()).Spec.App);
    }

    [Theory]
    [InlineData("drainDuration: soon", "proxy.meshproxy.io/config:1: drainDuration: 'soon' is not a duration")]
    [InlineData("drainDuration: 11m", "proxy.meshproxy.io/config:1: drainDuration: must be between 0s and 600s")]
    [InlineData("app:\n  port: 70000", "proxy.meshproxy.io/config:2: app.port: must be between 1 and 65535, got 70000")]
    [InlineData("app: { protocol: TLS }", "proxy.meshproxy.io/config:1: app.protocol: 'TLS' is not one of HTTP, HTTP2, GRPC, TCP")]
    [InlineData("drainDurations: 10s", "proxy.meshproxy.io/config:1: drainDurations: unknown field")]
    [InlineData("workload: { serviceAccount: admin }", "proxy.meshproxy.io/config:1: workload: cannot be set per pod: comes from the pod itself")]
    [InlineData("listeners: { stats: 15021 }", "proxy.meshproxy.io/config:1: listeners.stats: cannot be set per pod")]
    [InlineData("listeners: { outbound: 0 }", "proxy.meshproxy.io/config:1: listeners.outbound: must be between 1 and 65535, got 0")]
    [InlineData("listeners: { inbound: 15020 }", "proxy.meshproxy.io/config:1: listeners: outbound, inbound, admin and stats must be different ports")]
    [InlineData("listeners: { admin: 9080 }", "proxy.meshproxy.io/config:1: app: app.port 9080 collides with one of the sidecar's own listener ports")]
    [InlineData("[drainDuration, 5s]", "proxy.meshproxy.io/config:1: must be one mapping of Sidecar spec fields")]
    [InlineData("drainDuration: 5s: x", "proxy.meshproxy.io/config:1: not valid YAML")]
    public void A_bad_fragment_admits_the_pod_unchanged_with_a_warning_naming_the_field_or_is_refused_when_failing_closed(string fragment, string reason)
    {
        var body = InjectionGoldenTests.ReviewJson(Pod(new() { [Annotations.ProxyConfig] = fragment }));

        var open = new AdmissionReviewHandler(new SidecarInjector(InjectionGoldenTests.Options)).Handle(Encoding.UTF8.GetBytes(body));
        var (response, patch) = InjectionGoldenTests.ParseReply(open.Body);
        Assert.True(response["allowed"]!.GetValue<bool>());
        Assert.Null(patch);
        var warning = Assert.Single(response["warnings"]!.AsArray())!.GetValue<string>();
        Assert.StartsWith("meshproxy: sidecar not injected: ", warning, StringComparison.Ordinal);
        Assert.Contains(reason, warning, StringComparison.Ordinal);

        var closed = new AdmissionReviewHandler(new SidecarInjector(InjectionGoldenTests.Options with { FailClosed = true })).Handle(Encoding.UTF8.GetBytes(body));
        var (denied, _) = InjectionGoldenTests.ParseReply(closed.Body);
        Assert.False(denied["allowed"]!.GetValue<bool>());
        Assert.Contains(reason, denied["status"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    /// <summary>A pod whose app listens on 9080 (the bookinfo port), with the given annotations.</summary>
    private static JsonObject Pod(Dictionary<string, string> annotations) => new()
    {
        ["apiVersion"] = "v1",
        ["kind"] = "Pod",
        ["metadata"] = new JsonObject
        {
            ["name"] = "reviews-0",
            ["annotations"] = new JsonObject(annotations.Select(a => KeyValuePair.Create(a.Key, (JsonNode?)JsonValue.Create(a.Value)))),
        },
        ["spec"] = new JsonObject
        {
            ["containers"] = new JsonArray(new JsonObject
            {
                ["name"] = "reviews",
                ["image"] = "registry.example/reviews:1",
                ["ports"] = new JsonArray(new JsonObject { ["containerPort"] = 9080 }),
            }),
        },
    };

    private static string? Env(JsonNode container, string name) =>
        container["env"]!.AsArray().SingleOrDefault(e => e!["name"]!.GetValue<string>() == name)?["value"]?.GetValue<string>();
}
