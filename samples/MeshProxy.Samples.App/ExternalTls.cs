using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace MeshProxy.Samples.App;

/// <summary>
/// How the app checks external HTTPS servers: the system's roots, or only the roots in the PEM file named
/// by SAMPLE_APP_EXTRA_CA_FILE (the local mesh's stand-in for a public API has a certificate from a CA
/// made on the spot, which no system trusts).
/// </summary>
internal static class ExternalTls
{
    public const string CaFileVariable = "SAMPLE_APP_EXTRA_CA_FILE";

    public static SslClientAuthenticationOptions ClientOptions()
    {
        var caFile = Environment.GetEnvironmentVariable(CaFileVariable);
        if (string.IsNullOrEmpty(caFile))
        {
            return new SslClientAuthenticationOptions();
        }

        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(caFile);
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.AddRange(roots);
        return new SslClientAuthenticationOptions { CertificateChainPolicy = policy };
    }
}
