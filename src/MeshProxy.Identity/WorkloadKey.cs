using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity.Internal;

namespace MeshProxy.Identity;

/// <summary>
/// A workload's own ECDSA P-256 key. It is made in the process and never exported: only the CSR leaves,
/// and the issued certificate comes back to be joined with it (<see cref="X509Svid.Create"/>).
/// </summary>
public sealed class WorkloadKey : IDisposable
{
    private WorkloadKey(ECDsa key)
    {
        Key = key;
    }

    internal ECDsa Key { get; }

    public static WorkloadKey Create() => new(ECDsa.Create(ECCurve.NamedCurves.nistP256));

    /// <summary>A PKCS#10 request, PEM, with an empty subject and <paramref name="id"/> as its only SAN.</summary>
    public string CreateSigningRequestPem(SpiffeId id)
    {
        ArgumentNullException.ThrowIfNull(id);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), Key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(SubjectAltNames.BuildUri(id.Value, critical: true));
        return request.CreateSigningRequestPem();
    }

    internal bool Matches(X509Certificate2 certificate)
    {
        using var certKey = certificate.GetECDsaPublicKey();
        return certKey is not null &&
            certKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(Key.ExportSubjectPublicKeyInfo());
    }

    public void Dispose() => Key.Dispose();
}
