using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MeshProxy.Injection.Hosting;
using MeshProxy.Injection.Manifests;
using MeshProxy.Injection.Tests.Infrastructure;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// docker/ offline: no Docker engine or cluster here, so the images and manifests are checked against
/// the programs themselves: the webhook configuration's path and port reach the server's, the
/// Dockerfiles' entrypoints and ports are the programs' real ones, every manifest is valid YAML.
/// </summary>
public sealed partial class DeploymentArtifactTests
{
    private static string Docker => Path.Combine(RepoPaths.Root, "docker");

    private static List<JsonObject> Manifests() =>
        Directory.GetFiles(Path.Combine(Docker, "kubernetes"), "*.yaml")
            .SelectMany(f => YamlJson.ReadDocuments(File.ReadAllText(f)))
            .OfType<JsonObject>()
            .ToList();

    private static JsonObject Find(string kind, string name) =>
        Manifests().Single(m => S(m["kind"]) == kind && S(m["metadata"]!["name"]) == name);

    [Fact]
    public void Every_manifest_is_yaml_with_api_version_kind_and_name()
    {
        var files = Directory.GetFiles(Path.Combine(Docker, "kubernetes"), "*.yaml");
        Assert.True(files.Length >= 4);
        foreach (var file in files)
        {
            foreach (var doc in YamlJson.ReadDocuments(File.ReadAllText(file)))
            {
                var obj = Assert.IsType<JsonObject>(doc);
                Assert.Matches("^([a-z0-9.]+/)?v[0-9]+((alpha|beta)[0-9]+)?$", S(obj["apiVersion"]));
                Assert.Matches("^[A-Z][A-Za-z]+$", S(obj["kind"]));
                Assert.Matches("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", S(obj["metadata"]!["name"]));
            }
        }
    }

    [Fact]
    public void The_webhook_configuration_reaches_the_servers_path_and_port_through_the_service()
    {
        var config = Find("MutatingWebhookConfiguration", "meshproxy-sidecar-injector");
        var service = Find("Service", "meshproxy-controlplane");
        var deployment = Find("Deployment", "meshproxy-controlplane");
        Assert.Equal(2, deployment["spec"]!["replicas"]!.GetValue<long>());
        var injector = deployment["spec"]!["template"]!["spec"]!["containers"]!.AsArray().Single(c => S(c!["name"]) == "injector")!;

        foreach (var webhook in config["webhooks"]!.AsArray())
        {
            var target = webhook!["clientConfig"]!["service"]!;
            Assert.Equal(WebhookServerOptions.InjectPath, S(target["path"]));
            Assert.Equal(S(service["metadata"]!["name"]), S(target["name"]));
            Assert.Equal(S(service["metadata"]!["namespace"]), S(target["namespace"]));
            var port = service["spec"]!["ports"]!.AsArray().Single(p => p!["port"]!.GetValue<long>() == target["port"]!.GetValue<long>())!;
            Assert.Equal(WebhookServerOptions.DefaultPort, port["targetPort"]!.GetValue<long>());
            Assert.Equal("Ignore", S(webhook["failurePolicy"]));
            Assert.Equal(["v1"], webhook["admissionReviewVersions"]!.AsArray().Select(S));
            Assert.Equal("CA_BUNDLE_PLACEHOLDER", S(webhook["clientConfig"]!["caBundle"]));
            Assert.Equal("pods", S(webhook["rules"]![0]!["resources"]![0]));
        }

        Assert.Equal("enabled", S(config["webhooks"]![0]!["namespaceSelector"]!["matchLabels"]![Annotations.NamespaceLabel]));
        Assert.Equal("true", S(config["webhooks"]![1]!["objectSelector"]!["matchLabels"]![Annotations.Inject]));

        // The injector container listens where the Service sends, and its probes use the server's health path.
        var args = injector["args"]!.AsArray().Select(S).ToList();
        Assert.Equal($"0.0.0.0:{WebhookServerOptions.DefaultPort}", args[args.IndexOf("--listen") + 1]);
        Assert.Contains(injector["ports"]!.AsArray(), p => p!["containerPort"]!.GetValue<long>() == WebhookServerOptions.DefaultPort);
        Assert.Equal(WebhookServerOptions.HealthPath, S(injector["readinessProbe"]!["httpGet"]!["path"]));
        Assert.Equal("HTTPS", S(injector["readinessProbe"]!["httpGet"]!["scheme"]));
        var certDir = S(injector["volumeMounts"]![0]!["mountPath"]);
        Assert.Equal(certDir + "/tls.crt", args[args.IndexOf("--tls-cert") + 1]);
        Assert.Equal(certDir + "/tls.key", args[args.IndexOf("--tls-key") + 1]);
    }

    [Fact]
    public async Task The_injector_containers_arguments_are_the_programs_real_options()
    {
        var injector = Find("Deployment", "meshproxy-controlplane")["spec"]!["template"]!["spec"]!["containers"]!.AsArray().Single(c => S(c!["name"]) == "injector")!;
        Assert.Equal("/app/injector/meshproxy-injector", S(injector["command"]![0]));
        var args = injector["args"]!.AsArray().Select(S).ToArray();
        Assert.Equal("serve", args[0]);
        var help = await Run.DotnetAsync("meshproxy-injector", "serve", "--help");
        Assert.Equal(0, help.Exit);
        foreach (var flag in args.Where(a => a.StartsWith("--", StringComparison.Ordinal)))
        {
            Assert.Contains(flag, help.Stdout, StringComparison.Ordinal);
        }

        // And the program accepts exactly these arguments: it starts, and fails only on the missing certificate files.
        var run = await Run.DotnetAsync("meshproxy-injector", [.. args.Select(a => a == "0.0.0.0:15017" ? "127.0.0.1:0" : a)]);
        Assert.Equal(1, run.Exit);
        Assert.Contains("cannot start", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void The_control_plane_containers_arguments_are_its_real_options()
    {
        var program = Path.Combine(RepoPaths.Root, "src", "MeshProxy.ControlPlane", "Program.cs");
        Assert.SkipUnless(File.Exists(program), "src/MeshProxy.ControlPlane is not on this branch yet (branch controlplane)");
        var source = File.ReadAllText(program);
        // The certificate authority's options are read by CertificateServiceOptions.TryReadArgument (a switch expression).
        var certificateOptions = File.ReadAllText(Path.Combine(RepoPaths.Root, "src", "MeshProxy.ControlPlane", "Certificates", "CertificateServiceOptions.cs"));
        var container = Find("Deployment", "meshproxy-controlplane")["spec"]!["template"]!["spec"]!["containers"]!.AsArray().Single(c => S(c!["name"]) == "controlplane")!;
        foreach (var flag in container["args"]!.AsArray().Select(S).Where(a => a.StartsWith("--", StringComparison.Ordinal)))
        {
            Assert.True(source.Contains($"case \"{flag}\"", StringComparison.Ordinal) || certificateOptions.Contains($"\"{flag}\" =>", StringComparison.Ordinal)
                || certificateOptions.Contains($"\"{flag}\" when", StringComparison.Ordinal), $"{flag} is not an option of meshproxy-controlplane");
        }

        var (entrypoint, _, _) = Dockerfile("controlplane.Dockerfile");
        Assert.Equal(["/app/controlplane/meshproxy-controlplane"], entrypoint);
    }

    [Fact]
    public void The_dockerfiles_entrypoints_and_ports_are_the_programs_own()
    {
        var (sidecar, sidecarPorts, sidecarText) = Dockerfile("sidecar.Dockerfile");
        Assert.Equal(["/app/meshproxy-sidecar"], sidecar);
        Assert.Equal("meshproxy-sidecar", AssemblyName("MeshProxy.Sidecar"));
        var defaults = MeshProxy.Config.Resources.ListenerPorts.Default;
        Assert.Equal(new[] { defaults.Outbound, defaults.Inbound, defaults.Stats }, sidecarPorts);
        Assert.Equal(SidecarInjector.StatsPort, defaults.Stats);
        // The classic sidecar's postStart hook runs the waiter copied into the image.
        Assert.Contains("COPY --from=build /out/init /app/init", sidecarText, StringComparison.Ordinal);
        Assert.StartsWith("/app/init/", SidecarInjector.WaitCommand[0], StringComparison.Ordinal);
        Assert.Equal("meshproxy-init", Path.GetFileName(SidecarInjector.WaitCommand[0]));

        var (init, _, initText) = Dockerfile("init.Dockerfile");
        Assert.Equal(["/app/meshproxy-init"], init);
        Assert.Equal("meshproxy-init", AssemblyName("MeshProxy.Init"));
        Assert.Contains("iptables", initText, StringComparison.Ordinal);

        var (_, controlPorts, _) = Dockerfile("controlplane.Dockerfile");
        Assert.Equal(new[] { 15010, 15012, 15014, WebhookServerOptions.DefaultPort }, controlPorts);
        Assert.Equal("meshproxy-injector", AssemblyName("MeshProxy.Injector"));

        foreach (var file in new[] { "sidecar.Dockerfile", "controlplane.Dockerfile" })
        {
            var text = File.ReadAllText(Path.Combine(Docker, file));
            Assert.Contains("USER 1337:1337", text, StringComparison.Ordinal);
            Assert.Contains("FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build", text, StringComparison.Ordinal);
            Assert.Contains("FROM mcr.microsoft.com/dotnet/aspnet:10.0-noble-chiseled", text, StringComparison.Ordinal);
            Assert.Contains("DOTNET_EnableDiagnostics=0", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task The_sidecar_reads_the_config_path_the_injected_pod_gives_it()
    {
        var help = await Run.DotnetAsync("meshproxy-sidecar", "--help");
        Assert.Equal(0, help.Exit);
        Assert.Contains("MESHPROXY_CONFIG", help.Stdout, StringComparison.Ordinal);
        var init = await Run.DotnetAsync("meshproxy-init", "--help");
        Assert.Equal(0, init.Exit);
        Assert.Contains("wait --url", init.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_certificate_script_fills_the_ca_bundle_with_the_ca_that_signed_the_serving_certificate()
    {
        var dir = Directory.CreateTempSubdirectory("meshproxy-webhook-certs-").FullName;
        try
        {
            var run = await Run.ProcessAsync("bash", [Path.Combine(Docker, "kubernetes", "webhook-certs.sh"), dir]);
            Assert.True(run.Exit == 0, run.Stderr);
            var webhook = YamlJson.ReadDocuments(File.ReadAllText(Path.Combine(dir, "webhook.yaml"))).OfType<JsonObject>().Single();
            var bundles = webhook["webhooks"]!.AsArray().Select(w => S(w!["clientConfig"]!["caBundle"])).Distinct().ToList();
            var bundle = Assert.Single(bundles);
            Assert.Equal(File.ReadAllText(Path.Combine(dir, "ca.crt")), System.Text.Encoding.ASCII.GetString(Convert.FromBase64String(bundle)));
            var verify = await Run.ProcessAsync("openssl", ["verify", "-CAfile", Path.Combine(dir, "ca.crt"), Path.Combine(dir, "tls.crt")]);
            Assert.True(verify.Exit == 0, verify.Stdout + verify.Stderr);
            var san = await Run.ProcessAsync("openssl", ["x509", "-in", Path.Combine(dir, "tls.crt"), "-noout", "-ext", "subjectAltName"]);
            Assert.Contains("DNS:meshproxy-controlplane.meshproxy-system.svc", san.Stdout, StringComparison.Ordinal);
            var secret = YamlJson.ReadDocuments(File.ReadAllText(Path.Combine(dir, "webhook-certs-secret.yaml"))).OfType<JsonObject>().Single();
            Assert.Equal("meshproxy-webhook-certs", S(secret["metadata"]!["name"]));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (string[] Entrypoint, int[] Ports, string Text) Dockerfile(string name)
    {
        var text = File.ReadAllText(Path.Combine(Docker, name));
        var entry = EntrypointPattern().Match(text);
        Assert.True(entry.Success, $"{name}: no exec-form ENTRYPOINT");
        var entrypoint = JsonSerializer.Deserialize<string[]>(entry.Groups[1].Value)!;
        var ports = ExposePattern().Matches(text).SelectMany(m => m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Select(int.Parse).ToArray();
        return (entrypoint, ports, text);
    }

    private static string AssemblyName(string project)
    {
        var csproj = File.ReadAllText(Path.Combine(RepoPaths.Root, "src", project, project + ".csproj"));
        return AssemblyNamePattern().Match(csproj).Groups[1].Value;
    }

    private static string S(JsonNode? node) => node!.GetValue<string>();

    [GeneratedRegex(@"^ENTRYPOINT (\[.*\])\s*$", RegexOptions.Multiline)]
    private static partial Regex EntrypointPattern();

    [GeneratedRegex(@"^EXPOSE ([0-9 ]+)\s*$", RegexOptions.Multiline)]
    private static partial Regex ExposePattern();

    [GeneratedRegex("<AssemblyName>([^<]+)</AssemblyName>")]
    private static partial Regex AssemblyNamePattern();
}
