using System.Collections.Immutable;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity.Internal;

namespace MeshProxy.Identity;

/// <summary>
/// The roots a workload trusts for its trust domain: usually one, two while a CA rotates (old and new,
/// so that certificates from either verify). Immutable; a new bundle replaces the old one as a whole.
/// </summary>
public sealed class TrustBundle
{
    private TrustBundle(ImmutableArray<X509Certificate2> roots)
    {
        Roots = roots;
        Pem = Certificates.ToPem(roots);
    }

    public ImmutableArray<X509Certificate2> Roots { get; }

    /// <summary>The bundle as concatenated PEM certificates.</summary>
    public string Pem { get; }

    /// <exception cref="CryptographicException">No certificate, an unreadable one, or one that is not a CA.</exception>
    public static TrustBundle FromPem(string pem)
    {
        ArgumentNullException.ThrowIfNull(pem);
        return FromCertificates(Certificates.ReadAll(pem, "trust bundle"));
    }

    /// <exception cref="CryptographicException">No certificate, or one that is not a CA.</exception>
    public static TrustBundle FromCertificates(IEnumerable<X509Certificate2> roots)
    {
        ArgumentNullException.ThrowIfNull(roots);
        var builder = ImmutableArray.CreateBuilder<X509Certificate2>();
        foreach (var root in roots)
        {
            if (!Certificates.IsCa(root))
            {
                throw new CryptographicException($"trust bundle: '{root.Subject}' is not a CA certificate (basic constraints CA:true is missing)");
            }

            if (!builder.Any(r => r.RawDataMemory.Span.SequenceEqual(root.RawDataMemory.Span)))
            {
                builder.Add(root);
            }
        }

        if (builder.Count == 0)
        {
            throw new CryptographicException("trust bundle: it holds no certificate");
        }

        return new TrustBundle(builder.ToImmutable());
    }

    /// <summary>This bundle plus the roots of <paramref name="other"/> (for a CA rotation), duplicates dropped.</summary>
    public TrustBundle Merge(TrustBundle other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return FromCertificates(Roots.Concat(other.Roots));
    }

    public bool Contains(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        foreach (var root in Roots)
        {
            if (root.RawDataMemory.Span.SequenceEqual(certificate.RawDataMemory.Span))
            {
                return true;
            }
        }

        return false;
    }

    public override string ToString() => string.Join(", ", Roots.Select(r => $"{r.Subject} ({r.Thumbprint})"));
}
