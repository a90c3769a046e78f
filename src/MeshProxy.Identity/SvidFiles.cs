using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity.Internal;

namespace MeshProxy.Identity;

/// <summary>What <see cref="SvidFiles.Load"/> found: an SVID with its bundle, or why there is none to use.</summary>
public sealed record SavedSvid(X509Svid? Svid, TrustBundle? Bundle, string? Problem)
{
    /// <summary>True when nothing was saved: not a problem, just nothing to restore.</summary>
    public bool None => Svid is null && Problem is null;
}

/// <summary>
/// An SVID, its private key and the trust bundle it was issued with, kept in three files that share a
/// prefix (<c>.cert-chain.pem</c>, <c>.key.pem</c>, <c>.root-cert.pem</c>), so that a restarted workload can
/// serve with a still-valid certificate while its CA is unreachable. Each file is written to a temporary
/// file created 0600 and renamed over, so the key is never readable by others and a crash never leaves a
/// torn file. A crash between two renames can leave a key that does not match the chain; <see cref="Load"/>
/// refuses such a set like any other that does not hold together.
/// </summary>
public sealed class SvidFiles
{
    public SvidFiles(string prefix)
    {
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        ChainPath = prefix + ".cert-chain.pem";
        KeyPath = prefix + ".key.pem";
        BundlePath = prefix + ".root-cert.pem";
    }

    public string ChainPath { get; }

    public string KeyPath { get; }

    public string BundlePath { get; }

    /// <exception cref="IOException">The files cannot be written.</exception>
    /// <exception cref="UnauthorizedAccessException">The directory is not writable.</exception>
    public void Save(X509Svid svid, TrustBundle bundle)
    {
        ArgumentNullException.ThrowIfNull(svid);
        ArgumentNullException.ThrowIfNull(bundle);
        using var key = (AsymmetricAlgorithm?)svid.Certificate.GetECDsaPrivateKey() ?? svid.Certificate.GetRSAPrivateKey()
            ?? throw new InvalidOperationException("the SVID carries no ECDSA or RSA private key");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(KeyPath))!);

        // The key last: until it is renamed in, the old key no longer matches the new chain and Load refuses the set.
        FilePermissions.WriteSecretAtomically(BundlePath, bundle.Pem);
        FilePermissions.WriteSecretAtomically(ChainPath, Certificates.ToPem([svid.Certificate, .. svid.Intermediates]));
        FilePermissions.WriteSecretAtomically(KeyPath, key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>
    /// The saved SVID if it can be used now: the three files exist, the key file is owner-only and matches the
    /// leaf, the leaf names exactly <paramref name="expected"/>, and <paramref name="verifier"/> accepts it against
    /// the saved bundle in both roles at the verifier's current time (so an expired or not yet valid one is refused).
    /// </summary>
    public SavedSvid Load(SpiffeId expected, PeerCertificateVerifier verifier)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(verifier);
        if (!File.Exists(ChainPath) && !File.Exists(KeyPath) && !File.Exists(BundlePath))
        {
            return new SavedSvid(null, null, null);
        }

        X509Svid svid;
        TrustBundle bundle;
        try
        {
            if (FilePermissions.CheckOwnerOnly(KeyPath) is { } loose)
            {
                return new SavedSvid(null, null, loose);
            }

            svid = X509Svid.FromPem(File.ReadAllText(ChainPath), File.ReadAllText(KeyPath));
            bundle = TrustBundle.FromPem(File.ReadAllText(BundlePath));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            return new SavedSvid(null, null, ex.Message);
        }

        if (svid.SpiffeId != expected)
        {
            return new SavedSvid(null, null, $"it is for {svid.SpiffeId}, this workload is {expected}");
        }

        if (verifier.VerifyOwn(svid, bundle, expected.TrustDomain) is { } refused)
        {
            return new SavedSvid(null, null, $"peers would refuse it as a {refused.Role.ToString().ToLowerInvariant()}: {refused.Result}");
        }

        return new SavedSvid(svid, bundle, null);
    }
}
