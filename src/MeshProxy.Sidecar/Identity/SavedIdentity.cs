using System.Security.Cryptography;
using MeshProxy.Identity;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Identity;

/// <summary>
/// Control-plane mode: the CA's SVID, its key and trust bundle kept beside the saved snapshot
/// (<c>&lt;snapshotPath&gt;.cert-chain.pem</c>, <c>.key.pem</c>, <c>.root-cert.pem</c>; in a pod the same
/// memory-backed volume, so the key never reaches a disk and dies with the pod). The saved snapshot alone
/// is not enough to serve after a restart during an outage: without a certificate inbound refuses every
/// handshake. Restored once at start if it is still valid for this workload; saved after every change.
/// </summary>
internal sealed class SavedIdentity
{
    private readonly SvidFiles _files;
    private readonly SvidStore _store;
    private readonly PeerCertificateVerifier _verifier;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private X509Svid? _restored;
    private (X509Svid Svid, TrustBundle Bundle)? _saved;

    public SavedIdentity(string snapshotPath, SvidStore store, PeerCertificateVerifier verifier, ILogger logger)
    {
        _files = new SvidFiles(snapshotPath);
        _store = store;
        _verifier = verifier;
        _logger = logger;
    }

    /// <summary>Puts the saved SVID in the store if it is usable for <paramref name="id"/> now; otherwise says why not (once).</summary>
    public bool TryRestore(SpiffeId id)
    {
        var saved = _files.Load(id, _verifier);
        if (saved.Svid is not { } svid)
        {
            if (saved.Problem is { } problem)
            {
                _logger.SavedSvidIgnored(_files.ChainPath, problem);
            }

            return false;
        }

        lock (_lock)
        {
            _restored = svid;
            _saved = (svid, saved.Bundle!);
        }

        _store.Update(svid, saved.Bundle!);
        _logger.SvidLoaded(svid.SpiffeId.Value, $"{_files.ChainPath} (saved before the restart; the CA renews it)", svid.Certificate.SerialNumber, svid.NotAfter, saved.Bundle!.Roots.Length);
        return true;
    }

    /// <summary>True for the SVID <see cref="TryRestore"/> installed.</summary>
    public bool IsRestored(X509Svid svid) => ReferenceEquals(Volatile.Read(ref _restored), svid);

    /// <summary>Writes what the store holds now, unless it is what was written (or restored) last. Failures are logged, never thrown.</summary>
    public void Save()
    {
        lock (_lock)
        {
            if (_store.Current is not { } svid || _store.TrustBundle is not { } bundle ||
                (_saved is { } last && ReferenceEquals(last.Svid, svid) && ReferenceEquals(last.Bundle, bundle)))
            {
                return;
            }

            try
            {
                _files.Save(svid, bundle);
                _saved = (svid, bundle);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException or InvalidOperationException)
            {
                // Serving goes on with the new SVID; only a restart during an outage would miss it.
                _logger.SvidSaveFailed(_files.KeyPath, ex.Message);
            }
        }
    }
}
