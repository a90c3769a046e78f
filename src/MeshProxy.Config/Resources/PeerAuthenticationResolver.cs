namespace MeshProxy.Config.Resources;

public static class MtlsModes
{
    /// <summary>The mode as configuration writes it: STRICT, PERMISSIVE, DISABLE.</summary>
    public static string ToName(this MtlsMode mode) => mode switch
    {
        MtlsMode.Permissive => "PERMISSIVE",
        MtlsMode.Disable => "DISABLE",
        _ => "STRICT",
    };
}

/// <summary>One mode in effect and the resource that set it ("PeerAuthentication/ns/name", "MeshConfig/ns/name" or "default").</summary>
public sealed record MtlsSetting(MtlsMode Mode, string SetBy)
{
    public static MtlsSetting Default { get; } = new(MtlsMode.Strict, "default");
}

/// <summary>
/// The inbound mTLS modes of one workload: <see cref="Workload"/> for every port, <see cref="Ports"/> where a
/// workload-scope policy's portLevelMtls says otherwise. Immutable; built once per snapshot.
/// </summary>
public sealed record InboundMtls(MtlsSetting Workload, IReadOnlyDictionary<int, MtlsSetting> Ports)
{
    public static InboundMtls Strict { get; } = new(MtlsSetting.Default, new Dictionary<int, MtlsSetting>());

    /// <summary>The mode for a connection to this workload port (the original destination port, or the app port).</summary>
    public MtlsSetting For(int port) => Ports.TryGetValue(port, out var setting) ? setting : Workload;
}

/// <summary>
/// Istio's PeerAuthentication precedence, shared by the control plane (which pushes a workload only the
/// policies in effect for it) and the sidecar (which resolves the modes of its own ports): a port-level mode
/// over the workload-scope policy's mode over the namespace's over the mesh's (root namespace, no selector),
/// and under all of them MeshConfig's mtls.mode, whose own default is STRICT. UNSET at a level inherits the
/// level below. Two policies at one level (Istio takes the oldest, which a file does not record): the first
/// by name wins, so that the answer never depends on the order resources arrive in.
/// </summary>
public static class PeerAuthenticationResolver
{
    /// <summary>The policies in effect for a workload, least specific first: at most one mesh, one namespace and one workload policy.</summary>
    public static IReadOnlyList<PeerAuthenticationResource> InEffect(
        IEnumerable<PeerAuthenticationResource> policies, string workloadNamespace, IReadOnlyDictionary<string, string> workloadLabels, string rootNamespace)
    {
        PeerAuthenticationResource? mesh = null, ns = null, workload = null;
        foreach (var p in policies.OrderBy(p => p.Metadata.Name, StringComparer.Ordinal))
        {
            if (!p.Spec.HasSelector)
            {
                if (p.Metadata.Namespace == rootNamespace)
                {
                    mesh ??= p;
                }
                else if (p.Metadata.Namespace == workloadNamespace)
                {
                    ns ??= p;
                }
            }
            else if (p.Metadata.Namespace == workloadNamespace && p.Metadata.Namespace != rootNamespace && p.Spec.SelectsWorkload(workloadLabels))
            {
                // A selector picks workloads of its own namespace only; in the root namespace it is ignored (as Istio does).
                workload ??= p;
            }
        }

        return [.. new[] { mesh, ns, workload }.OfType<PeerAuthenticationResource>()];
    }

    public static InboundMtls Resolve(
        IEnumerable<PeerAuthenticationResource> policies,
        string workloadNamespace,
        IReadOnlyDictionary<string, string> workloadLabels,
        MeshConfigResource? meshConfig)
    {
        var rootNamespace = (meshConfig?.Spec ?? MeshConfigSpec.Default).RootNamespace;
        var setting = meshConfig is null ? MtlsSetting.Default : new MtlsSetting(meshConfig.Spec.Mtls, $"{meshConfig.Kind}/{meshConfig.Metadata.Namespace}/{meshConfig.Metadata.Name}");
        var inEffect = InEffect(policies, workloadNamespace, workloadLabels, rootNamespace);
        foreach (var p in inEffect)
        {
            if (p.Spec.Mode is { } mode)
            {
                setting = new MtlsSetting(mode, p.Key);
            }
        }

        var ports = new Dictionary<int, MtlsSetting>();
        if (inEffect.Count > 0 && inEffect[^1].Spec.HasSelector)
        {
            var workload = inEffect[^1];
            foreach (var (port, mode) in workload.Spec.PortLevel)
            {
                // A port-level UNSET inherits the workload's mode: no entry needed.
                if (mode is { } portMode)
                {
                    ports[port] = new MtlsSetting(portMode, $"{workload.Key} portLevelMtls[{port}]");
                }
            }
        }

        return new InboundMtls(setting, ports);
    }
}
