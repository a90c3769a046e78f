using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MeshProxy.Cli;
using MeshProxy.Cli.Install;
using MeshProxy.Config.Schema;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Injection.Hosting;
using MeshProxy.Injection.Manifests;

namespace MeshProxy.ControlPlane.Tests.Install;

/// <summary>
/// <c>meshproxy install</c>'s output parsed back and checked object by object against what its kind requires and what
/// the other objects provide (selectors, ports, accounts, volumes, roles), for the default revision and a canary; the
/// kustomize base in docker/kubernetes is that output (byte for byte, and as kubectl kustomize renders it).
/// </summary>
public sealed partial class InstallManifestTests
{
    private static readonly string Base = Path.Combine(RepoPaths.Root, "docker", "kubernetes");

    public static TheoryData<string> Installs => ["default", "canary", "other-namespace"];

    [Fact]
    public void The_kustomize_base_is_the_default_install_written_as_files()
    {
        var options = new InstallOptions();
        var files = Manifests.Files(options);
        var expected = files.ToDictionary(f => f.Name, Manifests.Text);
        expected[Manifests.CrdsFile] = CrdWriter.Write();
        expected[Manifests.KustomizationFile] = Manifests.Kustomization(files);

        var stale = expected.Where(e => !File.Exists(Path.Combine(Base, e.Key)) || File.ReadAllText(Path.Combine(Base, e.Key)) != e.Value).Select(e => e.Key).ToList();
        Assert.True(stale.Count == 0, $"docker/kubernetes is stale ({string.Join(", ", stale)}): regenerate it with `meshproxy install --kustomize-base docker/kubernetes`");
        // Nothing else beside it: a manifest left over from an older layout would be applied by `kubectl apply -f docker/kubernetes`.
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), Directory.GetFiles(Base).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Kubectl_kustomize_renders_exactly_what_install_prints()
    {
        var rendered = await Run.ProcessAsync("kubectl", ["kustomize", Base]);
        Assert.True(rendered.Exit == 0, rendered.Stderr);
        var output = new StringWriter();
        Assert.Equal(0, InstallCommand.RunInstall(new InstallOptions(), kustomizeBase: null, output, new StringWriter()));

        var fromKustomize = ByKey(Parse(rendered.Stdout));
        var fromInstall = ByKey(Parse(output.ToString()));
        Assert.Equal(fromInstall.Keys.Order(StringComparer.Ordinal), fromKustomize.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, obj) in fromInstall)
        {
            Assert.True(JsonNode.DeepEquals(obj, fromKustomize[key]), $"{key} differs:\ninstall:   {obj.ToJsonString()}\nkustomize: {fromKustomize[key].ToJsonString()}");
        }
    }

    [Theory]
    [MemberData(nameof(Installs))]
    public void Every_object_has_what_its_kind_requires_and_refers_only_to_objects_of_the_install(string install)
    {
        var options = Options(install);
        var objects = Parse(Manifests.Render(options));
        Assert.Equal(objects.Count, ByKey(objects).Count); // no two objects share kind, namespace and name
        var problems = new ManifestChecker(options, objects).Problems();
        Assert.True(problems.Count == 0, string.Join("\n", problems));

        // The control plane's resource directory is valid as the control plane reads it.
        var dir = RepoPaths.NewTempDirectory();
        foreach (var (file, text) in Find(objects, "ConfigMap", options.ConfigMap)["data"]!.AsObject())
        {
            File.WriteAllText(Path.Combine(dir, file), text!.GetValue<string>());
        }

        var errors = new StringWriter();
        Assert.True(ValidateCommand.Run(dir, errors, new StringWriter()) == 0, errors.ToString());

        // The control plane publishes the webhook's certificate for exactly the webhook, Service and Secret the install made.
        var args = Container(objects, options.ControlPlane)["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToList();
        Assert.Equal(options.WebhookConfiguration, args[args.IndexOf("--webhook-configuration") + 1]);
        Assert.Equal($"{options.Namespace}/{options.Injector}", args[args.IndexOf("--webhook-service") + 1]);
        Assert.Equal(options.WebhookSecret, args[args.IndexOf("--webhook-secret") + 1]);
    }

    [Fact]
    public void The_checker_finds_what_a_broken_manifest_gets_wrong()
    {
        // The checks above must be able to fail: break one thing per kind and see each named.
        var options = new InstallOptions();
        (string Breakage, Action<List<JsonObject>> Break, string Expected)[] cases =
        [
            ("selector off the template", o => Find(o, "Deployment", options.ControlPlane)["spec"]!["selector"]!["matchLabels"]!["app"] = "other", "selector does not match its pod template"),
            ("root container", o => Pod(o, options.Injector)["securityContext"]!["runAsNonRoot"] = false, "runAsNonRoot"),
            ("writable root", o => Container(o, options.Injector)["securityContext"]!["readOnlyRootFilesystem"] = false, "readOnlyRootFilesystem"),
            ("no image", o => Container(o, options.ControlPlane).Remove("image"), "has no image"),
            ("undeclared port bound everywhere", o => Container(o, options.ControlPlane)["args"]!.AsArray().Add("0.0.0.0:15000"), "binds 0.0.0.0:15000"),
            ("service to nothing", o => Find(o, "Service", options.Injector)["spec"]!["ports"]![0]!["targetPort"] = 9999L, "targetPort 9999"),
            ("wildcard verb", o => Find(o, "ClusterRole", options.ControlPlane)["rules"]![0]!["verbs"] = new JsonArray("*"), "wildcard"),
            ("binding to a missing role", o => Find(o, "RoleBinding", options.ControlPlane)["roleRef"]!["name"] = "nope", "roleRef Role/nope"),
            ("webhook to a missing service", o => Find(o, "MutatingWebhookConfiguration", options.WebhookConfiguration)["webhooks"]![0]!["clientConfig"]!["service"]!["name"] = "nope", "calls Service meshproxy-system/nope"),
            ("a caBundle in the manifest", o => Find(o, "MutatingWebhookConfiguration", options.WebhookConfiguration)["webhooks"]![1]!["clientConfig"]!["caBundle"] = "Cg==", "caBundle"),
            ("unknown kind", o => o.Add(new JsonObject { ["apiVersion"] = "v1", ["kind"] = "Secret", ["metadata"] = new JsonObject { ["name"] = "x", ["namespace"] = "meshproxy-system" } }), "no check for kind Secret"),
        ];
        foreach (var (breakage, @break, expected) in cases)
        {
            var objects = Parse(Manifests.Render(options));
            @break(objects);
            var problems = new ManifestChecker(options, objects).Problems();
            Assert.True(problems.Any(p => p.Contains(expected, StringComparison.Ordinal)), $"{breakage}: expected a problem containing '{expected}', got:\n{string.Join("\n", problems)}");
        }
    }

    [Fact]
    public void A_revision_is_a_second_control_plane_and_webhook_sharing_only_the_namespace_and_crds()
    {
        var stable = ByKey(Parse(Manifests.Render(new InstallOptions())));
        var canary = ByKey(Parse(Manifests.Render(new InstallOptions { Revision = "canary" })));
        var shared = canary.Keys.Intersect(stable.Keys).ToList();
        Assert.All(shared, key => Assert.Matches("^(v1/Namespace|apiextensions.k8s.io/v1/CustomResourceDefinition)/", key));
        Assert.All(shared, key => Assert.True(JsonNode.DeepEquals(stable[key], canary[key]), key));
        Assert.All(canary.Keys.Except(shared), key => Assert.EndsWith("-canary", key, StringComparison.Ordinal));

        // The canary injector sends sidecars to the canary control plane.
        var injector = Container([.. canary.Values], "meshproxy-injector-canary");
        var args = injector["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToList();
        Assert.Equal("https://meshproxy-controlplane-canary.meshproxy-system.svc:15012", args[args.IndexOf("--control-plane") + 1]);
    }

    /// <summary>Namespace labels, pod labels, and the revision whose webhook must inject (null: none) — exactly one webhook of all, or none.</summary>
    public static TheoryData<string, string, string?> Placements => new()
    {
        { "meshproxy-injection=enabled", "", "default" },
        { "meshproxy-injection=enabled", "sidecar.meshproxy.io/inject=false", null },
        { "meshproxy-injection=enabled,meshproxy.io/rev=canary", "", "canary" },
        { "meshproxy.io/rev=canary", "", "canary" },
        { "meshproxy.io/rev=canary", "sidecar.meshproxy.io/inject=false", null },
        { "meshproxy.io/rev=stable", "", null },
        { "", "", null },
        { "", "sidecar.meshproxy.io/inject=true", "default" },
        { "", "meshproxy.io/rev=canary", "canary" },
        { "meshproxy-injection=disabled", "sidecar.meshproxy.io/inject=true", null },
        { "kubernetes.io/metadata.name=kube-system", "sidecar.meshproxy.io/inject=true", null },
        { "kubernetes.io/metadata.name=meshproxy-system,meshproxy-injection=disabled", "meshproxy.io/rev=canary", null },
    };

    [Theory]
    [MemberData(nameof(Placements))]
    public void Each_pod_is_injected_by_the_revision_its_namespace_or_its_labels_chose_and_by_no_other(string namespaceLabels, string podLabels, string? revision)
    {
        var webhooks = new[] { new InstallOptions(), new InstallOptions { Revision = "canary" } }
            .SelectMany(o => Parse(Manifests.Render(o)).Where(x => Kind(x) == "MutatingWebhookConfiguration")
                .SelectMany(c => c["webhooks"]!.AsArray().Select(w => (Revision: o.Revision, Webhook: w!.AsObject()))))
            .ToList();
        var ns = Labels(namespaceLabels);
        ns.TryAdd("kubernetes.io/metadata.name", "shop");
        var pod = Labels(podLabels);

        var matching = webhooks.Where(w => LabelSelector.Matches(w.Webhook["namespaceSelector"] as JsonObject, ns) && LabelSelector.Matches(w.Webhook["objectSelector"] as JsonObject, pod)).ToList();
        Assert.True(matching.Count <= 1, $"injected twice: {string.Join(", ", matching.Select(m => m.Webhook["name"]))}");
        Assert.Equal(revision, matching.SingleOrDefault().Revision);
    }

    [Fact]
    public void Uninstall_lists_every_object_of_the_revision_and_the_secret_the_control_plane_wrote_webhook_first()
    {
        foreach (var options in new[] { new InstallOptions(), new InstallOptions { Revision = "canary" } })
        {
            var output = new StringWriter();
            Assert.Equal(0, InstallCommand.RunUninstall(options, purge: false, output, new StringWriter()));
            var deleted = Parse(output.ToString());
            var installed = Parse(Manifests.Render(options)).Where(o => Kind(o) is not ("Namespace" or "CustomResourceDefinition")).Select(Key).ToHashSet();
            Assert.Equal("MutatingWebhookConfiguration", Kind(deleted[0]));
            Assert.Equal(installed.Append($"v1/Secret/{options.Namespace}/{options.WebhookSecret}").Order(StringComparer.Ordinal), deleted.Select(Key).Order(StringComparer.Ordinal));
        }

        var purge = new StringWriter();
        Assert.Equal(0, InstallCommand.RunUninstall(new InstallOptions(), purge: true, purge, new StringWriter()));
        var purged = Parse(purge.ToString());
        Assert.Equal(ResourceSchemas.All.Count, purged.Count(o => Kind(o) == "CustomResourceDefinition"));
        Assert.Equal("Namespace", Kind(purged[^1]));

        var refused = new StringWriter();
        Assert.Equal(2, InstallCommand.RunUninstall(new InstallOptions { Revision = "canary" }, purge: true, new StringWriter(), refused));
        Assert.Contains("uninstall the other revisions", refused.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_options_are_refused_with_the_option_named()
    {
        (InstallOptions Options, string Expected)[] cases =
        [
            (new InstallOptions { Namespace = "Mesh_System" }, "--namespace 'Mesh_System'"),
            (new InstallOptions { Revision = "1.2" }, "--revision '1.2'"),
            (new InstallOptions { ControlPlaneReplicas = 0 }, "--replicas"),
            (new InstallOptions { Tag = "v1 beta" }, "--tag 'v1 beta'"),
        ];
        foreach (var (options, expected) in cases)
        {
            var error = new StringWriter();
            var output = new StringWriter();
            Assert.Equal(2, InstallCommand.RunInstall(options, null, output, error));
            Assert.Contains(expected, error.ToString(), StringComparison.Ordinal);
            Assert.Equal(string.Empty, output.ToString());
        }
    }

    [Fact]
    public void Options_reach_the_objects()
    {
        var options = new InstallOptions { Namespace = "mesh", Hub = "registry.example/mp", Tag = "1.4.0", ControlPlaneReplicas = 3, Revision = "v1-4" };
        var objects = Parse(Manifests.Render(options));
        Assert.All(objects.Where(o => o["metadata"]!["namespace"] is not null), o => Assert.Equal("mesh", o["metadata"]!["namespace"]!.GetValue<string>()));
        Assert.Equal(3L, Find(objects, "Deployment", "meshproxy-controlplane-v1-4")["spec"]!["replicas"]!.GetValue<long>());
        Assert.Equal("registry.example/mp/controlplane:1.4.0", Container(objects, "meshproxy-controlplane-v1-4")["image"]!.GetValue<string>());
        var args = Container(objects, "meshproxy-injector-v1-4")["args"]!.AsArray().Select(a => a!.GetValue<string>()).ToList();
        Assert.Equal("registry.example/mp/sidecar:1.4.0", args[args.IndexOf("--sidecar-image") + 1]);
        Assert.Equal("registry.example/mp/init:1.4.0", args[args.IndexOf("--init-image") + 1]);
        var webhook = Find(objects, "MutatingWebhookConfiguration", "meshproxy-sidecar-injector-v1-4")["webhooks"]![0]!;
        Assert.Equal("v1-4", webhook["namespaceSelector"]!["matchLabels"]!["meshproxy.io/rev"]!.GetValue<string>());
    }

    internal static InstallOptions Options(string install) => install switch
    {
        "canary" => new InstallOptions { Revision = "canary" },
        "other-namespace" => new InstallOptions { Namespace = "mesh", ControlPlaneReplicas = 1, InjectorReplicas = 1 },
        _ => new InstallOptions(),
    };

    internal static List<JsonObject> Parse(string yaml) => [.. YamlJson.ReadDocuments(yaml).OfType<JsonObject>()];

    internal static string Kind(JsonObject o) => o["kind"]!.GetValue<string>();

    internal static string Key(JsonObject o) =>
        $"{o["apiVersion"]!.GetValue<string>()}/{Kind(o)}/{o["metadata"]?["namespace"]?.GetValue<string>()}/{o["metadata"]!["name"]!.GetValue<string>()}";

    private static Dictionary<string, JsonObject> ByKey(IEnumerable<JsonObject> objects) => objects.ToDictionary(Key, StringComparer.Ordinal);

    internal static JsonObject Find(List<JsonObject> objects, string kind, string name) =>
        objects.Single(o => Kind(o) == kind && o["metadata"]!["name"]!.GetValue<string>() == name);

    private static JsonObject Pod(List<JsonObject> objects, string deployment) => Find(objects, "Deployment", deployment)["spec"]!["template"]!["spec"]!.AsObject();

    internal static JsonObject Container(List<JsonObject> objects, string deployment) => Pod(objects, deployment)["containers"]![0]!.AsObject();

    private static Dictionary<string, string> Labels(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('=')).ToDictionary(p => p[0], p => p[1]);

    [GeneratedRegex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
    internal static partial Regex DnsName();
}
