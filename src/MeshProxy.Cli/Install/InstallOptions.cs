using System.Text.RegularExpressions;

namespace MeshProxy.Cli.Install;

/// <summary>
/// What <c>meshproxy install</c> renders: the namespace, images and replicas, and the revision. Every name of a
/// revision's own objects comes from here, so a second revision never collides with the first and
/// <c>uninstall --revision</c> finds exactly what <c>install --revision</c> made.
/// </summary>
internal sealed partial record InstallOptions
{
    /// <summary>The revision without a name suffix: the one namespaces labelled meshproxy-injection=enabled get.</summary>
    public const string DefaultRevision = "default";

    /// <summary>The namespace label that picks a revision (Istio's istio.io/rev, under our domain).</summary>
    public const string RevisionLabel = "meshproxy.io/rev";

    public const string PartOfLabel = "app.kubernetes.io/part-of";

    public string Namespace { get; init; } = "meshproxy-system";

    /// <summary>Registry and organisation of the images: {Hub}/controlplane, {Hub}/sidecar, {Hub}/init.</summary>
    public string Hub { get; init; } = "meshproxy";

    public string Tag { get; init; } = "latest";

    /// <summary>Two: the replicas share one CA root (Secret meshproxy-ca, created once under a Lease), so either signs.</summary>
    public int ControlPlaneReplicas { get; init; } = 2;

    public int InjectorReplicas { get; init; } = 2;

    public string Revision { get; init; } = DefaultRevision;

    public string ClusterDomain { get; init; } = "cluster.local";

    public string TrustDomain { get; init; } = "cluster.local";

    /// <summary>The Kubernetes version the injector plans for: 1.29 and later get native sidecars.</summary>
    public string KubernetesVersion { get; init; } = "1.29";

    public bool IsDefaultRevision => Revision == DefaultRevision;

    public string ControlPlane => Suffixed("meshproxy-controlplane");

    public string Injector => Suffixed("meshproxy-injector");

    public string ConfigMap => Suffixed("meshproxy-config");

    public string WebhookConfiguration => Suffixed("meshproxy-sidecar-injector");

    /// <summary>The Secret the control plane writes the injector's serving certificate to (it is not rendered: the CA fills it).</summary>
    public string WebhookSecret => Suffixed("meshproxy-injector-tls");

    public string ControlPlaneImage => $"{Hub}/controlplane:{Tag}";

    public string SidecarImage => $"{Hub}/sidecar:{Tag}";

    public string InitImage => $"{Hub}/init:{Tag}";

    /// <summary>The injector Service's DNS name, which the API server dials and the serving certificate names.</summary>
    public string InjectorHost => $"{Injector}.{Namespace}.svc";

    /// <summary>Null when valid; otherwise which option is wrong and why (names must be DNS labels: they become object names).</summary>
    public string? Validate()
    {
        if (!DnsLabel().IsMatch(Namespace))
        {
            return $"--namespace '{Namespace}': must be a DNS label (lower-case letters, digits and '-', at most 63)";
        }

        // The longest derived name is meshproxy-sidecar-injector-<rev>: it must stay a valid name too.
        if (!DnsLabel().IsMatch(Revision) || Revision.Length > 30)
        {
            return $"--revision '{Revision}': must be a DNS label of at most 30 characters";
        }

        if (ControlPlaneReplicas < 1 || InjectorReplicas < 1)
        {
            return "--replicas and --injector-replicas must be at least 1";
        }

        if (Hub.Length == 0 || Hub.Any(char.IsWhiteSpace) || Tag.Length == 0 || !ImageTag().IsMatch(Tag))
        {
            return $"--hub '{Hub}' / --tag '{Tag}': not an image reference (a tag is letters, digits, '_', '.', '-', at most 128)";
        }

        return null;
    }

    private string Suffixed(string name) => IsDefaultRevision ? name : $"{name}-{Revision}";

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
    private static partial Regex DnsLabel();

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
    private static partial Regex ImageTag();
}
