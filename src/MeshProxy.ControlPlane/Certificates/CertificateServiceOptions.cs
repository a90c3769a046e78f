using System.Net;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// Where the certificate authority's key material and the bootstrap tokens live. Either
/// <see cref="CaDirectory"/> (a root the control plane generates once and then keeps) or the three
/// operator files (<see cref="CaCertChainFile"/>, <see cref="CaKeyFile"/>, <see cref="CaRootFile"/>).
/// </summary>
public sealed record CertificateServiceOptions
{
    /// <summary>Self-managed root: root-cert.pem and root-key.pem (0600), generated here on first start.</summary>
    public string? CaDirectory { get; init; }

    /// <summary>Operator CA: the signing certificate first, then the intermediates above it.</summary>
    public string? CaCertChainFile { get; init; }

    /// <summary>Operator CA: the signing certificate's private key (PEM).</summary>
    public string? CaKeyFile { get; init; }

    /// <summary>Operator CA: the root(s) the signing certificate chains to.</summary>
    public string? CaRootFile { get; init; }

    /// <summary>
    /// Roots published in the trust bundle beside the CA's own, for a root rotation: the next root before
    /// the switch, the previous one after it.
    /// </summary>
    public string? AdditionalRootsFile { get; init; }

    /// <summary>The local bootstrap token store (<c>meshproxy token create</c> writes it); empty in Kubernetes mode.</summary>
    public required string TokenStoreFile { get; init; }

    /// <summary>
    /// Kubernetes mode (the host sets it with <c>--source kubernetes</c>; <c>--token-audience</c> too): workloads prove
    /// themselves with their projected service-account token, reviewed by the API server, instead of a token from the
    /// store. Null: the token store.
    /// </summary>
    internal TokenReviewOptions? TokenReview { get; init; }

    /// <summary>
    /// Kubernetes mode without <see cref="CaDirectory"/> or operator files: the root lives in a Secret in the control
    /// plane's namespace, shared by every replica (<c>--ca-secret</c> names it); Istio's plug-in Secret <c>cacerts</c>
    /// takes precedence. No key is written to disk. The host sets it whenever a CA is asked for in Kubernetes mode.
    /// </summary>
    internal KubernetesCaOptions? KubernetesCa { get; init; }

    /// <summary>gRPC over TLS with a certificate this CA issues to the control plane itself (Istio's 15012); null: none.</summary>
    public IPEndPoint? TlsEndPoint { get; init; }

    /// <summary>The control plane's own service account, in MeshConfig's root namespace.</summary>
    public string ServiceAccount { get; init; } = "meshproxy-controlplane";

    /// <summary>How far not-before is backdated, for peers whose clocks lag (tests with lifetimes of seconds set 0).</summary>
    public TimeSpan ClockSkewAllowance { get; init; } = TimeSpan.FromMinutes(1);

    public bool UsesOperatorCa => CaCertChainFile is not null || CaKeyFile is not null || CaRootFile is not null;

    /// <summary>Null when the options hold together, otherwise what is wrong.</summary>
    public string? Validate()
    {
        if (UsesOperatorCa && CaDirectory is not null)
        {
            return "--ca-dir and --ca-cert-chain/--ca-key/--ca-root are alternatives; give one CA";
        }

        if (KubernetesCa is not null)
        {
            if (UsesOperatorCa || CaDirectory is not null)
            {
                return "--ca-secret keeps the CA in a Kubernetes Secret; --ca-dir and --ca-cert-chain/--ca-key/--ca-root keep it in files: give one";
            }

            if (TokenReview is null)
            {
                return "--ca-secret needs --source kubernetes";
            }

            if (AdditionalRootsFile is not null)
            {
                return "--ca-additional-roots is for a CA in files: a root kept in a Secret is rotated by annotating it (meshproxy.io/rotate-root)";
            }

            return string.IsNullOrWhiteSpace(TokenStoreFile) ? null
                : "--token-store is for the directory source: with --source kubernetes the CA checks each pod's service-account token through the API server (TokenReview)";
        }

        if (UsesOperatorCa && (CaCertChainFile is null || CaKeyFile is null || CaRootFile is null))
        {
            return "an operator CA needs all three of --ca-cert-chain, --ca-key and --ca-root";
        }

        if (!UsesOperatorCa && CaDirectory is null)
        {
            return "the certificate authority needs --ca-dir (self-managed root) or --ca-cert-chain, --ca-key and --ca-root";
        }

        if (TokenReview is not null)
        {
            return string.IsNullOrWhiteSpace(TokenStoreFile) ? null
                : "--token-store is for the directory source: with --source kubernetes the CA checks each pod's service-account token through the API server (TokenReview)";
        }

        return string.IsNullOrWhiteSpace(TokenStoreFile) ? "the certificate authority needs --token-store (or --source kubernetes, which reviews service-account tokens)" : null;
    }

    /// <summary>
    /// Reads one certificate option at <paramref name="index"/> (advancing past its value) into
    /// <paramref name="options"/>; false when <paramref name="args"/>[index] is not one of them.
    /// </summary>
    public static bool TryReadArgument(string[] args, ref int index, ref CertificateServiceOptions? options)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (index + 1 >= args.Length)
        {
            return false;
        }

        var value = args[index + 1];
        var current = options ?? new CertificateServiceOptions { TokenStoreFile = string.Empty };
        CertificateServiceOptions? next = args[index] switch
        {
            "--ca-dir" => current with { CaDirectory = value },
            "--ca-cert-chain" => current with { CaCertChainFile = value },
            "--ca-key" => current with { CaKeyFile = value },
            "--ca-root" => current with { CaRootFile = value },
            "--ca-additional-roots" => current with { AdditionalRootsFile = value },
            "--token-store" => current with { TokenStoreFile = value },
            "--ca-secret" when value.Length > 0 => current with { KubernetesCa = (current.KubernetesCa ?? new()) with { SecretName = value } },
            "--token-audience" when value.Length > 0 => current with { TokenReview = (current.TokenReview ?? new()) with { Audience = value } },
            "--token-pod-address" when value is "check" or "ignore" => current with { TokenReview = (current.TokenReview ?? new()) with { CheckPeerAddress = value == "check" } },
            "--grpc-tls" when IPEndPoint.TryParse(value, out var tls) => current with { TlsEndPoint = tls },
            _ => null,
        };
        if (next is null)
        {
            return false;
        }

        options = next;
        index++;
        return true;
    }

    public const string Usage = """
          --ca-dir <dir>            certificate authority with a self-managed root kept in <dir> (generated on first start)
          --ca-cert-chain <file>    certificate authority from operator files: signing certificate + intermediates,
          --ca-key <file>             its private key,
          --ca-root <file>            and the root(s) it chains to
          --ca-additional-roots <f> extra roots for the trust bundle (root rotation)
          --ca-secret <name>        with --source kubernetes and no --ca-dir/--ca-cert-chain (the default there): the root
                                    lives in this Secret of the control plane's namespace (POD_NAMESPACE), default
                                    meshproxy-ca, shared by every replica; an Istio plug-in CA in Secret cacerts wins
          --token-store <file>      bootstrap tokens (meshproxy token create); required with a CA, except with
                                    --source kubernetes, where each pod's service-account token is checked by TokenReview
          --token-audience <a>      with --source kubernetes: the audience of the pods' projected tokens, default meshproxy
          --token-pod-address check|ignore
                                    with --source kubernetes: a pod-bound token's CSR must come from its pod's IP (check,
                                    the default); ignore only where source addresses are rewritten (--masquerade-all)
          --grpc-tls <addr:port>    gRPC over TLS with a certificate from the CA, e.g. 0.0.0.0:15012
        """;
}
