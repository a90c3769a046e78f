namespace MeshProxy.Injection;

/// <summary>
/// How the operator wants pods injected. The images, the control plane's address and the sidecar's
/// default resources are cluster-wide choices; pods adjust the rest through annotations.
/// </summary>
public sealed record InjectorOptions
{
    public string SidecarImage { get; init; } = "meshproxy/sidecar:latest";

    public string InitImage { get; init; } = "meshproxy/init:latest";

    public string ImagePullPolicy { get; init; } = "IfNotPresent";

    /// <summary>
    /// The address the sidecar streams its configuration from and sends its CSRs to: the control plane's gRPC over TLS
    /// (15012), checked against the trust bundle the pod mounts (caFile). An http:// address (plaintext 15010) is for
    /// a control plane outside Kubernetes only: the config stream and the token would cross the network in clear.
    /// </summary>
    public string ControlPlaneAddress { get; init; } = "https://meshproxy-controlplane.meshproxy-system.svc:15012";

    /// <summary>Audience of the projected ServiceAccount token the sidecar presents to the control plane.</summary>
    public string TokenAudience { get; init; } = "meshproxy";

    /// <summary>
    /// Native sidecars (an init container with <c>restartPolicy: Always</c>). An AdmissionReview does not
    /// carry the API server's version, so this is configuration: true for Kubernetes 1.29 and later
    /// (<see cref="SupportsNativeSidecars"/>); a pod may still choose with an annotation.
    /// </summary>
    public bool NativeSidecars { get; init; } = true;

    /// <summary>Refuse a pod that cannot be injected instead of admitting it without a sidecar.</summary>
    public bool FailClosed { get; init; }

    public string CpuRequest { get; init; } = "100m";

    public string MemoryRequest { get; init; } = "128Mi";

    /// <summary>Empty: no CPU limit (throttling a proxy adds latency to every request it carries).</summary>
    public string CpuLimit { get; init; } = string.Empty;

    public string MemoryLimit { get; init; } = "256Mi";

    /// <summary>The share of the sidecar's memory limit the .NET GC heap may use; the rest is code, stacks and native buffers.</summary>
    public int GcHeapHardLimitPercent { get; init; } = 75;

    /// <summary>
    /// The sidecar's gen0 allocation budget in bytes (DOTNET_GCgen0size; 0: the runtime's default, which on
    /// CPUs with a large cache lets the heap grow to tens of MB between collections). 4 MiB took ~13 MB off
    /// the sidecar's resident size at 1000 req/s for no CPU cost beyond noise (benchmarks/RESULTS.md, "GC
    /// settings of the sidecar"). The environment is the only way to give it: Native AOT reads no
    /// runtime-configuration property for it.
    /// </summary>
    public long GcGen0SizeBytes { get; init; } = 4 * 1024 * 1024;

    /// <summary>Native sidecars became beta and on by default in Kubernetes 1.29.</summary>
    public static bool SupportsNativeSidecars(string kubernetesVersion)
    {
        var text = kubernetesVersion.Trim().TrimStart('v');
        var parts = text.Split('.');
        if (parts.Length < 2 || !int.TryParse(parts[0], out var major) || !int.TryParse(new string(parts[1].TakeWhile(char.IsAsciiDigit).ToArray()), out var minor))
        {
            throw new FormatException($"'{kubernetesVersion}' is not a Kubernetes version such as 1.29 or v1.30.2");
        }

        return major > 1 || (major == 1 && minor >= 29);
    }
}
