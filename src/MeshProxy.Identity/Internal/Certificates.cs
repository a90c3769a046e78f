using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace MeshProxy.Identity.Internal;

internal static class Certificates
{
    public const string ServerAuth = "1.3.6.1.5.5.7.3.1";
    public const string ClientAuth = "1.3.6.1.5.5.7.3.2";

    public static bool IsCa(X509Certificate2 certificate)
    {
        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509BasicConstraintsExtension basic)
            {
                return basic.CertificateAuthority;
            }
        }

        return false;
    }

    public static X509KeyUsageFlags? KeyUsage(X509Certificate2 certificate)
    {
        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509KeyUsageExtension usage)
            {
                return usage.KeyUsages;
            }
        }

        return null;
    }

    /// <summary>The EKU extension, or null when the certificate has none (which RFC 5280 reads as "any").</summary>
    public static X509EnhancedKeyUsageExtension? EnhancedKeyUsage(X509Certificate2 certificate)
    {
        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509EnhancedKeyUsageExtension eku)
            {
                return eku;
            }
        }

        return null;
    }

    public static bool HasUsage(X509EnhancedKeyUsageExtension eku, string oid)
    {
        foreach (var usage in eku.EnhancedKeyUsages)
        {
            if (usage.Value == oid)
            {
                return true;
            }
        }

        return false;
    }

    public static bool IsSelfIssued(X509Certificate2 certificate) =>
        certificate.SubjectName.RawData.AsSpan().SequenceEqual(certificate.IssuerName.RawData);

    /// <summary>Every certificate in a PEM text, in order; throws <see cref="CryptographicException"/> on anything unreadable.</summary>
    public static X509Certificate2Collection ReadAll(string pem, string what)
    {
        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPem(pem);
        }
        catch (CryptographicException ex)
        {
            throw new CryptographicException($"{what}: not a readable PEM certificate list ({ex.Message})", ex);
        }

        if (collection.Count == 0)
        {
            throw new CryptographicException($"{what}: no certificate found in the PEM text");
        }

        return collection;
    }

    public static string ToPem(IEnumerable<X509Certificate2> certificates)
    {
        var builder = new StringBuilder();
        foreach (var certificate in certificates)
        {
            builder.Append(certificate.ExportCertificatePem()).Append('\n');
        }

        return builder.ToString();
    }

    public static DateTimeOffset NotBefore(X509Certificate2 certificate) => new(certificate.NotBefore.ToUniversalTime(), TimeSpan.Zero);

    public static DateTimeOffset NotAfter(X509Certificate2 certificate) => new(certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero);
}
