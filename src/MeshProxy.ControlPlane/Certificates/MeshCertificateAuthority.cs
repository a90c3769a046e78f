using System.Security.Cryptography;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.Identity;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// The control plane's CA as the configuration currently shapes it: trust domain and TTLs come from
/// MeshConfig, the key material from <see cref="CertificateServiceOptions"/>'s files or, in Kubernetes mode, from the
/// CA's Secret (<see cref="KubernetesCa"/>). When MeshConfig changes one of those settings, or the Secret changes (a
/// rotation step), the CA is built again; if that fails, the current one keeps signing. The loaded CA is immutable and
/// swapped whole, so a signature in flight finishes with the CA it started with.
/// </summary>
internal sealed class MeshCertificateAuthority : IDisposable
{
    private readonly Func<MeshConfigSpec, Loaded> _reload;
    private readonly KubernetesCa? _kubernetes;
    private readonly ILogger<MeshCertificateAuthority> _logger;
    private readonly Lock _reloadLock = new();
    private volatile Loaded _current;

    private MeshCertificateAuthority(Func<MeshConfigSpec, Loaded> reload, Loaded current, KubernetesCa? kubernetes, ILogger<MeshCertificateAuthority> logger)
    {
        _reload = reload;
        _current = current;
        _kubernetes = kubernetes;
        _logger = logger;
        if (kubernetes is not null)
        {
            kubernetes.Changed += OnMaterialChanged;
        }
    }

    /// <summary>The CA, its settings and the trust bundle it publishes, all from one moment.</summary>
    public Loaded Current => _current;

    /// <summary>Null when this replica may sign; otherwise why not now (Kubernetes mode: its view of the CA Secret is too old).</summary>
    public string? Unavailable => _kubernetes?.Unavailable;

    /// <summary>The Kubernetes-kept CA, in Kubernetes mode without files.</summary>
    public KubernetesCa? Kubernetes => _kubernetes;

    /// <summary>Raised after the CA was swapped (new MeshConfig settings, a rotation step): the published bundle may differ.</summary>
    public event Action<Loaded>? Changed;

    /// <summary>Loads (or, for a self-managed root, first generates) the CA.</summary>
    /// <exception cref="CertificateAuthorityException">The key material is missing, unsafe or inconsistent.</exception>
    public static MeshCertificateAuthority Load(CertificateServiceOptions options, MeshConfigSpec mesh, TimeProvider time, ILoggerFactory loggers)
    {
        var caLogger = loggers.CreateLogger<CertificateAuthority>();
        var loaded = LoadCore(options, mesh, time, caLogger, allowGenerate: true);
        // Never generate on a reload: a root that vanished while running must be restored, not silently replaced.
        return new MeshCertificateAuthority(m => LoadCore(options, m, time, caLogger, allowGenerate: false), loaded, null, loggers.CreateLogger<MeshCertificateAuthority>());
    }

    /// <summary>The CA from the key material <paramref name="kubernetes"/> keeps in the API server (it owns it from here on).</summary>
    /// <exception cref="CertificateAuthorityException">The material does not make a CA (a broken plug-in CA).</exception>
    public static MeshCertificateAuthority FromKubernetes(KubernetesCa kubernetes, CertificateServiceOptions options, MeshConfigSpec mesh, TimeProvider time, ILoggerFactory loggers)
    {
        var caLogger = loggers.CreateLogger<CertificateAuthority>();
        var loaded = FromPem(kubernetes.Current, options, mesh, time, caLogger);
        return new MeshCertificateAuthority(m => FromPem(kubernetes.Current, options, m, time, caLogger), loaded, kubernetes, loggers.CreateLogger<MeshCertificateAuthority>());
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

            if (Swap(mesh))
            {
                _logger.CaReloaded(mesh.TrustDomain, mesh.CertificateTtl, mesh.MaxCertificateTtl);
            }
        }
    }

    public void Dispose()
    {
        _kubernetes?.Dispose();
        _current.Authority.Dispose();
    }

    /// <summary>The CA Secret changed (a rotation step, an edited plug-in CA): rebuilt with the current settings.</summary>
    private void OnMaterialChanged()
    {
        lock (_reloadLock)
        {
            if (Swap(_current.Mesh) && _kubernetes is { } kube)
            {
                var now = _current;
                _logger.CaMaterialChanged(kube.Current.Origin, kube.Current.Phase.ToString(), now.Authority.SigningCertificate.Subject, now.Bundle.Roots.Length);
            }
        }
    }

    private bool Swap(MeshConfigSpec mesh)
    {
        try
        {
            _current = _reload(mesh);
            // The old CA is left to the collector: a signature in flight may still be using its key.
        }
        catch (Exception ex) when (ex is CertificateAuthorityException or ArgumentException or CryptographicException)
        {
            _logger.CaReloadFailed(ex.Message);
            return false;
        }

        Changed?.Invoke(_current);
        return true;
    }

    private static CertificateAuthorityOptions CaOptions(CertificateServiceOptions options, MeshConfigSpec mesh) => new()
    {
        TrustDomain = mesh.TrustDomain,
        DefaultTtl = mesh.CertificateTtl,
        MaxTtl = mesh.MaxCertificateTtl,
        ClockSkewAllowance = options.ClockSkewAllowance,
    };

    private static Loaded FromPem(CaPem pem, CertificateServiceOptions options, MeshConfigSpec mesh, TimeProvider time, ILogger caLogger)
    {
        var authority = CertificateAuthority.FromPem(pem.ChainPem, pem.KeyPem, pem.RootsPem, CaOptions(options, mesh), time, caLogger, pem.Origin, pem.Origin);
        TrustBundle bundle;
        try
        {
            bundle = authority.TrustBundle.Merge(TrustBundle.FromPem(pem.BundlePem));
        }
        catch (CryptographicException ex)
        {
            authority.Dispose();
            throw new CertificateAuthorityException($"{pem.Origin}: the trust bundle is not usable: {ex.Message}", ex);
        }

        return Build(authority, mesh, bundle);
    }

    private static Loaded Build(CertificateAuthority authority, MeshConfigSpec mesh, TrustBundle bundle) =>
        new(authority, mesh, bundle, [.. bundle.Roots.Select(r => r.ExportCertificatePem() + "\n")]);

    private static Loaded LoadCore(CertificateServiceOptions options, MeshConfigSpec mesh, TimeProvider time, ILogger caLogger, bool allowGenerate)
    {
        var caOptions = CaOptions(options, mesh);

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

        return Build(authority, mesh, bundle);
    }

    /// <param name="BundlePem">The bundle, one PEM certificate per root, as the API sends it.</param>
    internal sealed record Loaded(CertificateAuthority Authority, MeshConfigSpec Mesh, TrustBundle Bundle, IReadOnlyList<string> BundlePem);
}
