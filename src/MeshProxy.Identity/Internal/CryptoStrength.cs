using System.Security.Cryptography.X509Certificates;

namespace MeshProxy.Identity.Internal;

/// <summary>
/// The floor a certificate on a peer's path must meet: RSA keys of at least 2048 bits, EC keys of at least 256,
/// and no MD5 or SHA-1 signature. .NET on Linux has OpenSSL verify the chain's signatures but not its security
/// level, so a 1024-bit key or a SHA-1 signature (both forgeable at a cost) would otherwise pass.
/// </summary>
internal static class CryptoStrength
{
    public const int MinRsaBits = 2048;
    public const int MinEcBits = 256;

    private const string RsaKey = "1.2.840.113549.1.1.1";
    private const string EcKey = "1.2.840.10045.2.1";

    // Signature algorithms over MD2, MD5 or SHA-1: RSA PKCS#1, ECDSA and DSA.
    private static readonly HashSet<string> WeakSignatures = new(StringComparer.Ordinal)
    {
        "1.2.840.113549.1.1.2", // md2WithRSAEncryption
        "1.2.840.113549.1.1.4", // md5WithRSAEncryption
        "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
        "1.3.14.3.2.29", // sha1WithRSASignature (OIW)
        "1.2.840.10045.4.1", // ecdsa-with-SHA1
        "1.2.840.10040.4.3", // dsa-with-sha1
    };

    /// <summary>Why <paramref name="certificate"/> is too weak, or null when it is strong enough.</summary>
    public static string? Weakness(X509Certificate2 certificate)
    {
        var subject = certificate.Subject;
        if (certificate.SignatureAlgorithm.Value is { } signature && WeakSignatures.Contains(signature))
        {
            return $"'{subject}' is signed with {certificate.SignatureAlgorithm.FriendlyName ?? signature}; SHA-1 and MD5 signatures are refused";
        }

        switch (certificate.PublicKey.Oid.Value)
        {
            case RsaKey:
                using (var rsa = certificate.GetRSAPublicKey())
                {
                    if (rsa is null || rsa.KeySize < MinRsaBits)
                    {
                        return $"'{subject}' has a {rsa?.KeySize ?? 0}-bit RSA key; at least {MinRsaBits} bits are required";
                    }
                }

                return null;
            case EcKey:
                using (var ec = certificate.GetECDsaPublicKey())
                {
                    if (ec is null || ec.KeySize < MinEcBits)
                    {
                        return $"'{subject}' has a {ec?.KeySize ?? 0}-bit EC key; at least {MinEcBits} bits are required";
                    }
                }

                return null;
            default:
                return null; // Ed25519 and other modern keys have no weak sizes
        }
    }
}
