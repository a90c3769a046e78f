using System.Security.Cryptography;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.Identity;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// The control plane's CA as the configuration currently shapes it: trust domain and TTLs come from
/// MeshConfig, the key material from <see cref="CertificateServiceOptions"/>. When MeshConfig changes one
/// of those, the CA is loaded again from the same files with the new settings; if that fails, the current
/// one keeps signing. The loaded CA is immutable and swapped whole, so a signature in flight finishes with
/// the CA it started with.
/// </summary>
internal sealed class MeshCertificateAuthority : IDisposable
{
    private readonly CertificateServiceOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _caLogger;
    private readonly ILogger<MeshCertificateAuthority> _logger;
    private readonly Lock _reloadLock = new();
    private volatile Loaded _current;

    private MeshCertificateAuthority(CertificateServiceOptions options, Loaded current, TimeProvider time, ILogger caLogger, ILogger<MeshCertificateAuthority> logger)
    {
        _options = options;
        _current = current;
        _time = time;
        _caLogger = caLogger;
        _logger = logger;
    }

    /// <summary>The CA, its settings and the trust bundle it publishes, all from one moment.</summary>
    public Loaded Current => _current;

    /// <summary>Loads (or, for a self-managed root, first generates) the CA.</summary>
    /// <exception cref="CertificateAuthorityException">The key material is missing, unsafe or inconsistent.</exception>
    public static MeshCertificateAuthority Load(CertificateServiceOptions options, MeshConfigSpec mesh, TimeProvider time, ILoggerFactory loggers)
    {
        var caLogger = loggers.CreateLogger<CertificateAuthority>();
        var loaded = LoadCore(options, mesh, time, caLogger, allowGenerate: true);
        return new MeshCertificateAuthority(options, loaded, time, caLogger, loggers.CreateLogger<MeshCertificateAuthority>());
    }

    public static MeshConfigSpec MeshOf(ConfigState state) =>
        state.Resources.Select(r => r.Resource).OfType<MeshConfigResource>().FirstOrDefault()?.Spec ?? MeshConfigSpec.Default;

    /// <summary>Follows a configuration change if it touched the trust domain or the TTLs.</summary>
    public void OnConfigChanged(ConfigState state)
    {
        var mesh = MeshOf(state);
        lock (_reloadLock)
        {
            var current = _current;
            if (mesh.TrustDomain == current.Mesh.TrustDomain && mesh.CertificateTtl == current.Mesh.CertificateTtl && mesh.MaxCertificateTtl == current.Mesh.MaxCertificateTtl)
            {
                return;
            }

            try
            {
                // Never generate here: a root that vanished while running must be restored, not silently replaced.
                _current = LoadCore(_options, mesh, _time, _caLogger, allowGenerate: false);
                _logger.CaReloaded(mesh.TrustDomain, mesh.CertificateTtl, mesh.MaxCertificateTtl);
                // The old CA is left to the collector: a signature in flight may still be using its key.
            }
            catch (Exception ex) when (ex is CertificateAuthorityException or ArgumentException or CryptographicException)
            {
                _logger.CaReloadFailed(ex.Message);
            }
        }
    }

    public void Dispose() => _current.Authority.Dispose();

    private static Loaded LoadCore(CertificateServiceOptions options, MeshConfigSpec mesh, TimeProvider time, ILogger caLogger, bool allowGenerate)
    {
        var caOptions = new CertificateAuthorityOptions
        {
            TrustDomain = mesh.TrustDomain,
            DefaultTtl = mesh.CertificateTtl,
            MaxTtl = mesh.MaxCertificateTtl,
            ClockSkewAllowance = options.ClockSkewAllowance,
        };

        CertificateAuthority authority;
        try
        {
            if (options.UsesOperatorCa)
            {
                authority = CertificateAuthority.LoadFromPemFiles(options.CaCertChainFile!, options.CaKeyFile!, options.CaRootFile!, caOptions, time, caLogger);
            }
            else
            {
                var directory = options.CaDirectory!;
                if (!allowGenerate && !File.Exists(Path.Combine(directory, CertificateAuthority.RootCertFileName)))
                {
                    throw new CertificateAuthorityException($"{directory} no longer holds {CertificateAuthority.RootCertFileName}");
                }

                Directory.CreateDirectory(directory);
                authority = CertificateAuthority.LoadOrCreate(directory, caOptions, time, caLogger);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CertificateAuthorityException($"Cannot load the certificate authority: {ex.Message}", ex);
        }

        var bundle = authority.TrustBundle;
        if (options.AdditionalRootsFile is { } extra)
        {
            try
            {
                bundle = bundle.Merge(TrustBundle.FromPem(File.ReadAllText(extra)));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
            {
                authority.Dispose();
                throw new CertificateAuthorityException($"{extra}: cannot read the additional roots: {ex.Message}", ex);
            }
        }

        return new Loaded(authority, mesh, bundle, [.. bundle.Roots.Select(r => r.ExportCertificatePem() + "\n")]);
    }

    /// <param name="BundlePem">The bundle, one PEM certificate per root, as the API sends it.</param>
    internal sealed record Loaded(CertificateAuthority Authority, MeshConfigSpec Mesh, TrustBundle Bundle, IReadOnlyList<string> BundlePem);
}
