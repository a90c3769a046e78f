using System.Collections.Immutable;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity.Internal;

namespace MeshProxy.Identity;

/// <summary>
/// A workload's X.509 SVID: the leaf with its private key, the intermediates to send with it, and the
/// <see cref="SslStreamCertificateContext"/> built once from them, so handshakes do not rebuild the chain.
/// Immutable; a rotation makes a new one.
/// </summary>
public sealed class X509Svid
{
    private X509Svid(SpiffeId id, X509Certificate2 certificate, ImmutableArray<X509Certificate2> intermediates)
    {
        SpiffeId = id;
        Certificate = certificate;
        Intermediates = intermediates;
        NotBefore = Certificates.NotBefore(certificate);
        NotAfter = Certificates.NotAfter(certificate);
        // offline: the context must never go to the network for missing intermediates (AIA) or OCSP.
        CertificateContext = SslStreamCertificateContext.Create(certificate, [.. intermediates], offline: true);
    }

    public SpiffeId SpiffeId { get; }

    /// <summary>The leaf, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    public ImmutableArray<X509Certificate2> Intermediates { get; }

    /// <summary>For Kestrel's ServerCertificateSelector / SslServerAuthenticationOptions and for client certificates.</summary>
    public SslStreamCertificateContext CertificateContext { get; }

    public DateTimeOffset NotBefore { get; }

    public DateTimeOffset NotAfter { get; }

    /// <summary>
    /// An SVID from files an operator or an external issuer wrote (cert-manager, SPIRE's helper): a chain, leaf
    /// first, and the leaf's unencrypted private key (PKCS#8, SEC1 or PKCS#1 PEM). The SPIFFE ID is read from the
    /// leaf, which must name exactly one URI and nothing else.
    /// </summary>
    /// <exception cref="CryptographicException">Unreadable PEM, a key that does not match the leaf, or no single SPIFFE ID.</exception>
    public static X509Svid FromPem(string certificateChainPem, string privateKeyPem)
    {
        ArgumentNullException.ThrowIfNull(certificateChainPem);
        ArgumentNullException.ThrowIfNull(privateKeyPem);

        var chain = Certificates.ReadAll(certificateChainPem, "certificate chain");
        var leaf = chain[0];
        var san = SubjectAltNames.Find(leaf.Extensions) is { } extension ? SubjectAltNames.Read(extension.RawData) : default;
        if (san.Uris is not { Count: 1 } || san.OtherCount != 0 || !SpiffeId.TryParse(san.Uris[0], out var id))
        {
            throw new CryptographicException($"the certificate '{leaf.Subject}' does not name exactly one SPIFFE ID as its only subjectAltName");
        }

        X509Certificate2 withKey;
        try
        {
            // CreateFromPem checks that the key is the leaf's own.
            withKey = X509Certificate2.CreateFromPem(leaf.ExportCertificatePem(), privateKeyPem);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            // A key for another certificate is an ArgumentException from CopyWithPrivateKey: still bad input, not a bug.
            throw new CryptographicException($"the private key cannot be used with the certificate for {id}: {ex.Message}", ex);
        }

        leaf.Dispose();
        return new X509Svid(id, withKey, chain.Skip(1).ToImmutableArray());
    }

    /// <summary>Joins an issued chain (leaf first, PEM) with the key the CSR was made from.</summary>
    /// <exception cref="CryptographicException">The chain is unreadable, is for another key, or names another identity.</exception>
    public static X509Svid Create(WorkloadKey key, string certificateChainPem, SpiffeId expected)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(certificateChainPem);
        ArgumentNullException.ThrowIfNull(expected);

        var chain = Certificates.ReadAll(certificateChainPem, "issued certificate chain");
        var leaf = chain[0];
        if (!key.Matches(leaf))
        {
            throw new CryptographicException("the issued certificate is not for this workload's key");
        }

        var san = SubjectAltNames.Find(leaf.Extensions) is { } extension ? SubjectAltNames.Read(extension.RawData) : default;
        if (san.Uris is not { Count: 1 } || san.Uris[0] != expected.Value || san.OtherCount != 0)
        {
            throw new CryptographicException($"the issued certificate does not name exactly {expected}");
        }

        var withKey = leaf.CopyWithPrivateKey(key.Key);
        leaf.Dispose();
        return new X509Svid(expected, withKey, chain.Skip(1).ToImmutableArray());
    }
}
