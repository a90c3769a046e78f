using System.Security.Cryptography;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Configuration;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Identity;

/// <summary>
/// The standalone identity source: <c>spec.tls</c>'s three PEM files, read at start-up and then re-read
/// whenever their content changes, so that whoever writes them (cert-manager, SPIRE's helper, a script)
/// rotates the sidecar's certificate and trust bundle in place. A set that does not hold together (a key
/// for another certificate while the files are half rewritten, an expired certificate, a bundle the
/// certificate does not chain to) is refused and the current identity stays in force.
/// </summary>
/// <remarks>
/// Polling, not inotify: Kubernetes updates mounted Secrets by swapping a symlink, which file watchers see
/// unreliably, and watchers miss changes on network filesystems. Reading three small files a second costs
/// nothing measurable.
/// </remarks>
internal sealed class TlsFileSource : IDisposable
{
    public static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    private readonly SidecarIdentity _identity;
    private readonly SnapshotStore _snapshots;
    private readonly TimeProvider _time;
    private readonly ILogger<TlsFileSource> _logger;
    private readonly PeerCertificateVerifier _verifier;
    private readonly Lock _lock = new();
    private ITimer? _timer;
    private byte[]? _loadedFingerprint;
    private string? _lastError;
    private SidecarTlsSpec? _files;

    public TlsFileSource(SidecarIdentity identity, SnapshotStore snapshots, TimeProvider time, ILogger<TlsFileSource> logger)
    {
        _identity = identity;
        _snapshots = snapshots;
        _time = time;
        _logger = logger;
        _verifier = new PeerCertificateVerifier(time);
    }

    /// <summary>
    /// Loads the files named by the current snapshot, if any, and starts watching them. Throws
    /// <see cref="ConfigException"/> when they are missing or unusable: the sidecar must not start without
    /// the identity it was told to have.
    /// </summary>
    public void LoadInitial()
    {
        var sidecar = _snapshots.Current.Sidecar;
        if (sidecar.Spec.Tls is not { } files)
        {
            return;
        }

        _identity.Enable();
        _files = files;
        if (TryLoad(files, _snapshots.Current.Mesh.TrustDomain, out var error) != true)
        {
            throw new ConfigException([new ConfigDiagnostic(sidecar.Source.File, sidecar.Source.Line, "spec.tls", error ?? "unusable")]);
        }

        _snapshots.Applied += OnSnapshotApplied;
        _timer = _time.CreateTimer(_ => Poll(), null, PollInterval, PollInterval);
    }

    public void Dispose()
    {
        _snapshots.Applied -= OnSnapshotApplied;
        _timer?.Dispose();
    }

    private void OnSnapshotApplied(SidecarSnapshot snapshot)
    {
        if (snapshot.Sidecar.Spec.Tls is { } files)
        {
            // New paths (or a new trust domain) take effect at once; the poll would notice only content changes.
            lock (_lock)
            {
                _files = files;
                _loadedFingerprint = null;
            }

            Poll();
        }
        else
        {
            _logger.IdentityModeChangeIgnored("spec.tls was removed; the files keep being watched");
        }
    }

    private void Poll()
    {
        lock (_lock)
        {
            if (_files is null || !_snapshots.HasSnapshot)
            {
                return;
            }

            bool? loaded;
            string? error;
            try
            {
                loaded = TryLoad(_files, _snapshots.Current.Mesh.TrustDomain, out error);
            }
            catch (Exception ex)
            {
                // A timer callback must never throw: that would end the process over a bad file.
                loaded = false;
                error = $"{_files.CertificateChainFile}: {ex.Message}";
            }

            if (loaded == false && error != _lastError)
            {
                // Logged once per distinct problem: a writer replacing the files one by one shows a mismatch
                // for a moment, and a broken file must not flood the log every second.
                _logger.SvidLoadFailed(error!);
            }

            _lastError = error;
        }
    }

    /// <summary>True when loaded, null when nothing changed, false (with the reason) when the files are unusable.</summary>
    private bool? TryLoad(SidecarTlsSpec files, string trustDomain, out string? error)
    {
        error = null;
        string chainPem, keyPem, bundlePem;
        try
        {
            chainPem = File.ReadAllText(files.CertificateChainFile);
            keyPem = File.ReadAllText(files.PrivateKeyFile);
            bundlePem = File.ReadAllText(files.TrustBundleFile);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = ex.Message;
            return false;
        }

        var fingerprint = SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Concat(chainPem, "\0", keyPem, "\0", bundlePem, "\0", trustDomain)));
        if (_loadedFingerprint is not null && fingerprint.AsSpan().SequenceEqual(_loadedFingerprint))
        {
            return null;
        }

        X509Svid svid;
        TrustBundle bundle;
        try
        {
            svid = X509Svid.FromPem(chainPem, keyPem);
            bundle = TrustBundle.FromPem(bundlePem);
        }
        catch (CryptographicException ex)
        {
            error = $"{files.CertificateChainFile}, {files.PrivateKeyFile}, {files.TrustBundleFile}: {ex.Message}";
            return false;
        }

        // Never install what peers would refuse: check it exactly as they will, as a client and as a server.
        if (_verifier.VerifyOwn(svid, bundle, trustDomain) is { } refused)
        {
            error = $"{files.CertificateChainFile}: peers would refuse this certificate as a {refused.Role.ToString().ToLowerInvariant()}: {refused.Result}";
            return false;
        }

        _identity.Store.Update(svid, bundle);
        _loadedFingerprint = fingerprint;
        _logger.SvidLoaded(svid.SpiffeId.Value, files.CertificateChainFile, svid.Certificate.SerialNumber, svid.NotAfter, bundle.Roots.Length);
        return true;
    }
}
