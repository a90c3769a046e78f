using System.CommandLine;
using System.Text.Json.Nodes;
using MeshProxy.Config.Schema;
using MeshProxy.Injection.Manifests;

namespace MeshProxy.Cli.Install;

/// <summary>
/// <c>meshproxy install</c> prints every manifest of a revision (for <c>kubectl apply -f -</c>) or writes the default
/// ones as a kustomize base; <c>meshproxy uninstall</c> prints what to delete (for <c>kubectl delete -f -</c>). Both
/// print rather than call the API, so what changes in the cluster can be read, diffed and reviewed first.
/// </summary>
internal static class InstallCommand
{
    public static IEnumerable<Command> Create()
    {
        var ns = new Option<string>("--namespace", "-n") { Description = "The control plane's namespace", DefaultValueFactory = _ => new InstallOptions().Namespace };
        var revision = new Option<string>("--revision") { Description = "A revision beside the default: its objects are suffixed -<revision> and it serves namespaces labelled meshproxy.io/rev=<revision>", DefaultValueFactory = _ => InstallOptions.DefaultRevision };
        var hub = new Option<string>("--hub") { Description = "Registry and organisation of the images ({hub}/controlplane, {hub}/sidecar, {hub}/init)", DefaultValueFactory = _ => new InstallOptions().Hub };
        var tag = new Option<string>("--tag") { Description = "The images' tag", DefaultValueFactory = _ => new InstallOptions().Tag };
        var replicas = new Option<int>("--replicas") { Description = "Control plane replicas", DefaultValueFactory = _ => new InstallOptions().ControlPlaneReplicas };
        var injectorReplicas = new Option<int>("--injector-replicas") { Description = "Injector (webhook) replicas", DefaultValueFactory = _ => new InstallOptions().InjectorReplicas };
        var clusterDomain = new Option<string>("--cluster-domain") { Description = "The cluster's DNS domain", DefaultValueFactory = _ => new InstallOptions().ClusterDomain };
        var trustDomain = new Option<string>("--trust-domain") { Description = "The mesh's SPIFFE trust domain", DefaultValueFactory = _ => new InstallOptions().TrustDomain };
        var kubernetesVersion = new Option<string>("--kubernetes-version") { Description = "The cluster's version: 1.29 and later get native sidecars", DefaultValueFactory = _ => new InstallOptions().KubernetesVersion };
        var kustomizeBase = new Option<string?>("--kustomize-base") { Description = "Write the manifests as files of a kustomize base in this directory instead of printing them" };
        var purge = new Option<bool>("--purge") { Description = "Also delete the CRDs (and with them every mesh resource in the cluster) and the namespace; default revision only" };

        InstallOptions Read(ParseResult parse) => new()
        {
            Namespace = parse.GetValue(ns)!,
            Revision = parse.GetValue(revision)!,
            Hub = parse.GetValue(hub)!,
            Tag = parse.GetValue(tag)!,
            ControlPlaneReplicas = parse.GetValue(replicas),
            InjectorReplicas = parse.GetValue(injectorReplicas),
            ClusterDomain = parse.GetValue(clusterDomain)!,
            TrustDomain = parse.GetValue(trustDomain)!,
            KubernetesVersion = parse.GetValue(kubernetesVersion)!,
        };

        var install = new Command("install", "Print every manifest of the mesh (CRDs, namespace, RBAC, control plane, injector, webhook) for kubectl apply -f -")
        {
            ns, revision, hub, tag, replicas, injectorReplicas, clusterDomain, trustDomain, kubernetesVersion, kustomizeBase,
        };
        install.SetAction(parse => RunInstall(Read(parse), parse.GetValue(kustomizeBase), Console.Out, Console.Error));

        var uninstall = new Command("uninstall", "Print what install created (and the Secret the control plane writes) for kubectl delete --ignore-not-found -f -")
        {
            ns, revision, purge,
        };
        uninstall.SetAction(parse => RunUninstall(Read(parse), parse.GetValue(purge), Console.Out, Console.Error));
        return [install, uninstall];
    }

    public static int RunInstall(InstallOptions options, string? kustomizeBase, TextWriter output, TextWriter error)
    {
        if (options.Validate() is { } invalid)
        {
            error.WriteLine($"meshproxy install: {invalid}");
            return 2;
        }

        if (kustomizeBase is null)
        {
            output.Write(Manifests.Render(options));
            return 0;
        }

        try
        {
            WriteBase(options, kustomizeBase);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"meshproxy install: cannot write the kustomize base in '{kustomizeBase}': {ex.Message}");
            return 1;
        }

        error.WriteLine($"meshproxy install: wrote the kustomize base in {kustomizeBase}; render it with kubectl kustomize {kustomizeBase}");
        return 0;
    }

    /// <summary>The base's files: the CRDs (as <c>meshproxy crds</c> writes them), each manifest file, the kustomization.</summary>
    public static void WriteBase(InstallOptions options, string directory)
    {
        Directory.CreateDirectory(directory);
        var files = Manifests.Files(options);
        File.WriteAllText(Path.Combine(directory, Manifests.CrdsFile), CrdWriter.Write());
        foreach (var file in files)
        {
            File.WriteAllText(Path.Combine(directory, file.Name), Manifests.Text(file));
        }

        File.WriteAllText(Path.Combine(directory, Manifests.KustomizationFile), Manifests.Kustomization(files));
    }

    public static int RunUninstall(InstallOptions options, bool purge, TextWriter output, TextWriter error)
    {
        if (options.Validate() is { } invalid)
        {
            error.WriteLine($"meshproxy uninstall: {invalid}");
            return 2;
        }

        if (purge && !options.IsDefaultRevision)
        {
            error.WriteLine("meshproxy uninstall: --purge removes what every revision shares (CRDs, namespace): uninstall the other revisions, then purge without --revision");
            return 2;
        }

        output.Write(YamlJson.WriteDocuments(DeleteList(options, purge)));
        return 0;
    }

    /// <summary>
    /// References (apiVersion, kind, name, namespace) to everything of the revision in reverse apply order: the webhook
    /// first, so no pod creation is sent to an injector that is going away. The namespace and CRDs are shared by every
    /// revision and deleting a CRD deletes every object of its kind, so they are listed only with <paramref name="purge"/>.
    /// </summary>
    public static IReadOnlyList<JsonObject> DeleteList(InstallOptions options, bool purge)
    {
        var objects = Manifests.Files(options).SelectMany(f => f.Objects).Where(o => Kind(o) != "Namespace").Reverse().Select(Reference).ToList();
        // Not rendered by install, written by the control plane: the injector's serving certificate.
        objects.Add(Reference("v1", "Secret", options.WebhookSecret, options.Namespace));
        if (purge)
        {
            objects.AddRange(ResourceSchemas.All.Select(k => Reference("apiextensions.k8s.io/v1", "CustomResourceDefinition", $"{k.Plural}.{ResourceSchemas.Group}", null)));
            objects.Add(Reference("v1", "Namespace", options.Namespace, null));
        }

        return objects;
    }

    private static string Kind(JsonObject o) => o["kind"]!.GetValue<string>();

    private static JsonObject Reference(JsonObject o) => Reference(
        o["apiVersion"]!.GetValue<string>(), Kind(o), o["metadata"]!["name"]!.GetValue<string>(), o["metadata"]!["namespace"]?.GetValue<string>());

    private static JsonObject Reference(string apiVersion, string kind, string name, string? ns)
    {
        var metadata = new JsonObject { ["name"] = name };
        if (ns is not null)
        {
            metadata["namespace"] = ns;
        }

        return new JsonObject { ["apiVersion"] = apiVersion, ["kind"] = kind, ["metadata"] = metadata };
    }
}
