using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Configuration;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.ControlPlaneClient;

/// <summary>
/// Trust for every call to an <c>https://</c> control plane (the config stream and the CA's CreateCertificate):
/// TLS 1.2+ only, and the control plane's certificate must chain to <c>controlPlane.caFile</c> and nothing else
/// (not the system store, not the workload's trust bundle), and name the control plane's SPIFFE ID
/// <c>spiffe://&lt;trustDomain&gt;/ns/&lt;rootNamespace&gt;/sa/meshproxy-controlplane</c>. That ID is the server
/// name: the control plane's certificate carries no DNS name. Until the first real snapshot the trust domain is
/// unknown, so any trust domain is accepted with the right namespace and service account; caFile still vouches.
/// The file is read again when it changes (a rotated root mounted over it applies at the next handshake).
/// A refusal fails the handshake: logged with the verifier's reason, counted, and the caller retries.
/// </summary>
internal sealed class ControlPlaneTls
{
    public const string ServiceAccount = "meshproxy-controlplane";

    /// <summary>The label of refusals because caFile itself could not be read or held no certificate.</summary>
    public const string CaFileUnusable = "ca_file_unusable";

    private readonly string _address;
    private readonly string? _caFile;
    private readonly SnapshotStore _snapshots;
    private readonly PeerCertificateVerifier _verifier;
    private readonly ILogger _logger;
    private readonly long[] _refusals = new long[Enum.GetValues<PeerVerificationFailure>().Length + 1];
    private readonly Lock _lock = new();
    private (DateTime Written, long Length, TrustBundle Bundle)? _roots;

    public ControlPlaneTls(SidecarResource bootstrap, string bootstrapPath, SnapshotStore snapshots, TimeProvider time, ILogger<ControlPlaneTls> logger)
    {
        var controlPlane = bootstrap.Spec.ControlPlane ?? throw new ArgumentException("the Sidecar resource names no control plane", nameof(bootstrap));
        _address = controlPlane.Address;
        IsTls = new Uri(controlPlane.Address).Scheme == Uri.UriSchemeHttps;
        _caFile = controlPlane.CaFile is { } file ? Path.GetFullPath(file, Path.GetDirectoryName(Path.GetFullPath(bootstrapPath))!) : null;
        _snapshots = snapshots;
        _verifier = new PeerCertificateVerifier(time);
        _logger = logger;
    }

    public bool IsTls { get; }

    /// <summary>The transport under one control-plane GrpcChannel (ControlPlaneChannel): null for http:// (h2c), a pinned TLS handler for https://.</summary>
    /// <param name="clientCertificate">Presented when the control plane asks for a client certificate (its config stream takes the SVID as the credential).</param>
    public SocketsHttpHandler? CreateHandler(X509Svid? clientCertificate = null) => IsTls
        ? new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = Validate,
                // The leaf, its key and the intermediates, sent as the chain.
                ClientCertificateContext = clientCertificate?.CertificateContext,
            },
        }
        : null;

    /// <summary>Handshakes refused for <paramref name="reason"/> (a verifier failure), or for an unusable caFile when null.</summary>
    public long Refusals(PeerVerificationFailure? reason) =>
        Interlocked.Read(ref _refusals[reason is { } r ? (int)r : _refusals.Length - 1]);

    private bool Validate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        // The platform's verdict (system roots, DNS name) is ignored on purpose: only caFile and the SPIFFE ID count.
        TrustBundle roots;
        try
        {
            roots = Roots();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException or InvalidOperationException)
        {
            Interlocked.Increment(ref _refusals[^1]);
            _logger.CaFileUnusable(_address, _caFile ?? "(none)", ex.Message);
            return false;
        }

        var peer = certificate as X509Certificate2 ?? (certificate is null ? null : X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
        var current = _snapshots.Current;
        var mesh = current.Mesh;
        var trustDomain = current.Provisional ? null : mesh.TrustDomain;
        var result = _verifier.Verify(peer, chain?.ChainPolicy.ExtraStore, roots, trustDomain, PeerRole.Server);
        if (result.IsValid && (result.SpiffeId!.Namespace != mesh.RootNamespace || result.SpiffeId.ServiceAccount != ServiceAccount))
        {
            var expected = $"spiffe://{trustDomain ?? "<any trust domain>"}/ns/{mesh.RootNamespace}/sa/{ServiceAccount}";
            Interlocked.Increment(ref _refusals[(int)PeerVerificationFailure.IdentityNotAllowed]);
            _logger.ControlPlaneRefused(_address, nameof(PeerVerificationFailure.IdentityNotAllowed), $"the certificate names {result.SpiffeId}, not the control plane's {expected}", _caFile!);
            return false;
        }

        if (!result.IsValid)
        {
            Interlocked.Increment(ref _refusals[(int)result.Failure]);
            _logger.ControlPlaneRefused(_address, result.Failure.ToString(), result.Message, _caFile!);
        }

        return result.IsValid;
    }

    private TrustBundle Roots()
    {
        var file = _caFile ?? throw new InvalidOperationException("controlPlane.caFile is not set: nothing may vouch for an https:// control plane");
        var info = new FileInfo(file);
        if (!info.Exists)
        {
            throw new IOException($"'{file}' does not exist");
        }

        lock (_lock)
        {
            if (_roots is { } cached && cached.Written == info.LastWriteTimeUtc && cached.Length == info.Length)
            {
                return cached.Bundle;
            }

            var bundle = TrustBundle.FromPem(File.ReadAllText(file));
            _roots = (info.LastWriteTimeUtc, info.Length, bundle);
            return bundle;
        }
    }
}
