using System.Collections.Immutable;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.Identity;

/// <summary>
/// The mesh CA: signs workload CSRs into X.509 SVIDs. It signs either with a root it generated and keeps
/// in a directory, or with an operator-supplied root or intermediate. Thread-safe; <see cref="Sign"/> holds
/// no lock.
/// </summary>
public sealed class CertificateAuthority : IDisposable
{
    public const string RootCertFileName = "root-cert.pem";
    public const string RootKeyFileName = "root-key.pem";

    private const string EcPublicKeyOid = "1.2.840.10045.2.1";
    private const string RsaOid = "1.2.840.113549.1.1.1";
    private const string P256Oid = "1.2.840.10045.3.1.7";
    private const string P384Oid = "1.3.132.0.34";

    private readonly X509Certificate2 _signer;
    private readonly ImmutableArray<X509Certificate2> _intermediates;
    private readonly X509AuthorityKeyIdentifierExtension _authorityKeyId;
    private readonly HashAlgorithmName _hash;
    private readonly CertificateAuthorityOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _intermediatesPem;

    private CertificateAuthority(
        X509Certificate2 signer,
        ImmutableArray<X509Certificate2> intermediates,
        TrustBundle trustBundle,
        CertificateAuthorityOptions options,
        TimeProvider time,
        ILogger logger)
    {
        _signer = signer;
        _intermediates = intermediates;
        _intermediatesPem = Certificates.ToPem(intermediates);
        TrustBundle = trustBundle;
        _options = options;
        _time = time;
        _logger = logger;
        _hash = signer.GetECDsaPublicKey() is { KeySize: > 256 } ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA256;
        _authorityKeyId = AuthorityKeyIdentifier(signer);
        Log.CaLoaded(logger, signer.Subject, Certificates.NotAfter(signer), options.TrustDomain);
    }

    /// <summary>The certificate this CA signs with (the root itself, or an intermediate).</summary>
    public X509Certificate2 SigningCertificate => _signer;

    /// <summary>The roots that workload certificates chain to.</summary>
    public TrustBundle TrustBundle { get; }

    public string TrustDomain => _options.TrustDomain;

    /// <summary>
    /// Loads the self-managed root from <paramref name="directory"/>, or generates an ECDSA P-256 root there
    /// when the directory holds neither file. The key file must be readable by its owner only.
    /// </summary>
    /// <exception cref="CertificateAuthorityException">Only one of the two files exists, the key file is readable by others, or the files do not belong together.</exception>
    public static CertificateAuthority LoadOrCreate(string directory, CertificateAuthorityOptions options, TimeProvider? time = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        time ??= TimeProvider.System;
        logger ??= NullLogger.Instance;

        var certPath = Path.Combine(directory, RootCertFileName);
        var keyPath = Path.Combine(directory, RootKeyFileName);
        var hasCert = File.Exists(certPath);
        var hasKey = File.Exists(keyPath);

        if (!hasCert && !hasKey)
        {
            GenerateRoot(directory, certPath, keyPath, options, time);
            Log.RootGenerated(logger, options.TrustDomain, directory, time.GetUtcNow() + options.RootValidity);
        }
        else if (hasCert != hasKey)
        {
            // Never regenerate over a surviving key or certificate: that would silently change the mesh's root.
            throw new CertificateAuthorityException(
                $"{directory} holds {(hasCert ? RootCertFileName : RootKeyFileName)} but not {(hasCert ? RootKeyFileName : RootCertFileName)}; restore the missing file or remove both to generate a new root");
        }

        if (FilePermissions.CheckOwnerOnly(keyPath) is { } problem)
        {
            throw new CertificateAuthorityException($"Refusing to load the CA key: {problem}");
        }

        var root = LoadWithKey(certPath, keyPath);
        if (!Certificates.IsSelfIssued(root) || !Certificates.IsCa(root))
        {
            throw new CertificateAuthorityException($"{certPath} is not a self-signed CA certificate");
        }

        return new CertificateAuthority(root, [], TrustBundle.FromCertificates([PublicOnly(root)]), options, time, logger);
    }

    /// <summary>
    /// Uses an operator-supplied CA. <paramref name="certChainPath"/> holds the signing certificate first,
    /// then any intermediates above it (a root there is ignored); <paramref name="keyPath"/> its private key;
    /// <paramref name="rootCertPath"/> the root(s) to trust. For a root that signs directly, pass the root's
    /// file as both <paramref name="certChainPath"/> and <paramref name="rootCertPath"/>.
    /// </summary>
    /// <exception cref="CertificateAuthorityException">Unreadable files, a key that does not match, a signer that is not a CA, or a chain that does not reach the root.</exception>
    public static CertificateAuthority LoadFromPemFiles(
        string certChainPath, string keyPath, string rootCertPath, CertificateAuthorityOptions options, TimeProvider? time = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        time ??= TimeProvider.System;
        logger ??= NullLogger.Instance;

        string chainPem, keyPem, rootsPem;
        try
        {
            rootsPem = File.ReadAllText(rootCertPath);
            chainPem = File.ReadAllText(certChainPath);
            keyPem = File.ReadAllText(keyPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CertificateAuthorityException($"Cannot read the CA certificates: {ex.Message}", ex);
        }

        return FromPem(chainPem, keyPem, rootsPem, options, time, logger, certChainPath, rootCertPath);
    }

    /// <summary>
    /// <see cref="LoadFromPemFiles"/> from text already in memory (a Kubernetes Secret's keys): the key never touches a
    /// disk. <paramref name="chainName"/> and <paramref name="rootsName"/> name the texts in error messages.
    /// </summary>
    /// <exception cref="CertificateAuthorityException">Unreadable PEM, a key that does not match, a signer that is not a CA, or a chain that does not reach the root.</exception>
    public static CertificateAuthority FromPem(
        string certChainPem, string keyPem, string rootsPem, CertificateAuthorityOptions options, TimeProvider? time = null, ILogger? logger = null,
        string chainName = "certificate chain", string rootsName = "roots")
    {
        ArgumentNullException.ThrowIfNull(certChainPem);
        ArgumentNullException.ThrowIfNull(keyPem);
        ArgumentNullException.ThrowIfNull(rootsPem);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        time ??= TimeProvider.System;
        logger ??= NullLogger.Instance;

        TrustBundle roots;
        X509Certificate2Collection chain;
        X509Certificate2 signer;
        try
        {
            roots = TrustBundle.FromPem(rootsPem);
            chain = Certificates.ReadAll(certChainPem, chainName);
            signer = X509Certificate2.CreateFromPem(certChainPem, keyPem);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw new CertificateAuthorityException($"Cannot load the CA certificate ({chainName}) with its key: {ex.Message}", ex);
        }

        if (!Certificates.IsCa(signer) || Certificates.KeyUsage(signer) is { } usage && !usage.HasFlag(X509KeyUsageFlags.KeyCertSign))
        {
            var subject = signer.Subject;
            signer.Dispose();
            throw new CertificateAuthorityException($"{chainName}: '{subject}' is not a CA certificate that may sign certificates (needs CA:true and keyCertSign)");
        }

        // What a leaf must be sent with: the signer itself unless it is the root, then anything between it and the root.
        var intermediates = chain.Where(c => !Certificates.IsSelfIssued(c)).ToImmutableArray();
        using (var x509Chain = new X509Chain())
        {
            var policy = x509Chain.ChainPolicy;
            policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            policy.CustomTrustStore.AddRange(roots.Roots.ToArray());
            policy.ExtraStore.AddRange(intermediates.ToArray());
            policy.RevocationMode = X509RevocationMode.NoCheck;
            policy.DisableCertificateDownloads = true;
            policy.VerificationTime = time.GetLocalNow().DateTime;
            if (!x509Chain.Build(signer))
            {
                var status = string.Join("; ", x509Chain.ChainStatus.Select(s => s.StatusInformation.Trim()));
                signer.Dispose();
                throw new CertificateAuthorityException($"{chainName}: the signing certificate does not chain to a root in {rootsName}: {status}");
            }
        }

        return new CertificateAuthority(signer, intermediates, roots, options, time, logger);
    }

    /// <summary>
    /// A new self-signed ECDSA P-256 root for <paramref name="options"/>' trust domain, as PEM (certificate, PKCS#8 key),
    /// for a caller that keeps it elsewhere than in files (a Kubernetes Secret).
    /// </summary>
    public static (string CertificatePem, string KeyPem) GenerateRootPem(CertificateAuthorityOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var root = NewRoot(key, options, time ?? TimeProvider.System);
        return (root.ExportCertificatePem() + "\n", key.ExportPkcs8PrivateKeyPem() + "\n");
    }

    /// <summary>
    /// Signs <paramref name="csrPem"/> for <paramref name="entitled"/>, the identity the caller proved (by its
    /// bootstrap credential) that it may hold. Requests above the maximum TTL are clamped to it.
    /// </summary>
    /// <exception cref="SigningRefusedException">The request is refused; <see cref="SigningRefusedException.Reason"/> says why.</exception>
    public IssuedCertificate Sign(string csrPem, SpiffeId entitled, TimeSpan? requestedTtl = null)
    {
        ArgumentNullException.ThrowIfNull(csrPem);
        ArgumentNullException.ThrowIfNull(entitled);
        try
        {
            return SignCore(csrPem, entitled, requestedTtl);
        }
        catch (SigningRefusedException ex)
        {
            Log.SigningRefused(_logger, entitled.Value, ex.Reason.ToString(), ex.Message);
            throw;
        }
    }

    private IssuedCertificate SignCore(string csrPem, SpiffeId entitled, TimeSpan? requestedTtl)
    {
        if (entitled.TrustDomain != _options.TrustDomain)
        {
            throw new SigningRefusedException(SigningRefusal.ForeignTrustDomain, $"{entitled} is not in this CA's trust domain '{_options.TrustDomain}'");
        }

        var ttl = requestedTtl ?? _options.DefaultTtl;
        if (ttl <= TimeSpan.Zero)
        {
            throw new SigningRefusedException(SigningRefusal.InvalidTtl, $"the requested TTL {ttl} is not positive");
        }

        if (ttl > _options.MaxTtl)
        {
            Log.TtlClamped(_logger, entitled.Value, ttl, _options.MaxTtl);
            ttl = _options.MaxTtl;
        }

        var request = LoadRequest(csrPem);
        CheckSubjectAltNames(request, entitled);
        var isRsa = CheckKey(request.PublicKey);

        var now = _time.GetUtcNow();
        var caNotBefore = Certificates.NotBefore(_signer);
        var caNotAfter = Certificates.NotAfter(_signer);
        if (now >= caNotAfter || now < caNotBefore)
        {
            throw new SigningRefusedException(SigningRefusal.CaNotValid, $"the CA certificate is valid from {caNotBefore:O} to {caNotAfter:O}, not now ({now:O})");
        }

        // Whole seconds: certificates carry no fractions, and the bounds must compare exactly with the CA's.
        var notBefore = Truncate(Max(now - _options.ClockSkewAllowance, caNotBefore));
        var notAfter = Truncate(Min(now + ttl, caNotAfter));

        // The leaf's name lives in the SAN alone; the CSR's subject and extensions are ignored, never copied.
        var leaf = new CertificateRequest(new X500DistinguishedName(string.Empty), request.PublicKey, _hash, RSASignaturePadding.Pkcs1);
        leaf.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, critical: true));
        leaf.CertificateExtensions.Add(new X509KeyUsageExtension(
            isRsa ? X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment : X509KeyUsageFlags.DigitalSignature, critical: true));
        leaf.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid(Certificates.ServerAuth), new Oid(Certificates.ClientAuth)], critical: false));
        // RFC 5280 4.2.1.6: with an empty subject the SAN must be critical.
        leaf.CertificateExtensions.Add(SubjectAltNames.BuildUri(entitled.Value, critical: true));
        leaf.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        leaf.CertificateExtensions.Add(_authorityKeyId);

        var serial = NewSerialNumber();
        using var issued = leaf.Create(_signer.SubjectName, SignatureGenerator(), notBefore, notAfter, serial);
        Log.Issued(_logger, entitled.Value, issued.SerialNumber, notAfter);
        return new IssuedCertificate(issued.ExportCertificatePem() + "\n" + _intermediatesPem, TrustBundle.Pem);
    }

    /// <summary>
    /// A TLS server certificate for DNS names, with a fresh ECDSA P-256 key: the injection webhook's serving certificate,
    /// which the API server checks against the webhook's caBundle by DNS name (it knows no SPIFFE IDs). Server
    /// authentication only; valid for <paramref name="lifetime"/> or until the CA's own certificate expires.
    /// </summary>
    /// <returns>The chain (leaf, then the CA's intermediates) and the private key, both PEM.</returns>
    public (string ChainPem, string KeyPem) IssueServingCertificate(IReadOnlyList<string> dnsNames, TimeSpan lifetime)
    {
        ArgumentNullException.ThrowIfNull(dnsNames);
        if (dnsNames.Count == 0 || lifetime <= TimeSpan.Zero)
        {
            throw new ArgumentException("a serving certificate needs at least one DNS name and a positive lifetime");
        }

        var now = _time.GetUtcNow();
        var caNotAfter = Certificates.NotAfter(_signer);
        if (now >= caNotAfter)
        {
            throw new CertificateAuthorityException($"the CA certificate expired at {caNotAfter:O}");
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leaf = new CertificateRequest(new X500DistinguishedName($"CN={dnsNames[0]}"), key, HashAlgorithmName.SHA256);
        leaf.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, critical: true));
        leaf.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        leaf.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(Certificates.ServerAuth)], critical: false));
        var names = new SubjectAlternativeNameBuilder();
        foreach (var name in dnsNames)
        {
            names.AddDnsName(name);
        }

        leaf.CertificateExtensions.Add(names.Build(critical: false));
        leaf.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(leaf.PublicKey, critical: false));
        leaf.CertificateExtensions.Add(_authorityKeyId);
        var notBefore = Truncate(Max(now - _options.ClockSkewAllowance, Certificates.NotBefore(_signer)));
        var notAfter = Truncate(Min(now + lifetime, caNotAfter));
        using var issued = leaf.Create(_signer.SubjectName, SignatureGenerator(), notBefore, notAfter, NewSerialNumber());
        Log.Issued(_logger, "DNS:" + string.Join(",DNS:", dnsNames), issued.SerialNumber, notAfter);
        return (issued.ExportCertificatePem() + "\n" + _intermediatesPem, key.ExportPkcs8PrivateKeyPem() + "\n");
    }

    private X509SignatureGenerator SignatureGenerator()
    {
        if (_signer.GetECDsaPrivateKey() is { } ecdsa)
        {
            return X509SignatureGenerator.CreateForECDsa(ecdsa);
        }

        if (_signer.GetRSAPrivateKey() is { } rsa)
        {
            return X509SignatureGenerator.CreateForRSA(rsa, RSASignaturePadding.Pkcs1);
        }

        throw new CertificateAuthorityException("the CA key is neither ECDSA nor RSA");
    }

    private CertificateRequest LoadRequest(string csrPem)
    {
        try
        {
            // Extensions are loaded only to be inspected; the issued certificate gets its own.
            return CertificateRequest.LoadSigningRequestPem(
                csrPem, _hash, CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions, RSASignaturePadding.Pkcs1);
        }
        catch (CryptographicException ex) when (IsSignatureFailure(csrPem))
        {
            throw new SigningRefusedException(SigningRefusal.BadSignature, "the CSR's signature does not verify with its public key", ex);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw new SigningRefusedException(SigningRefusal.MalformedCsr, $"the CSR cannot be read: {ex.Message}", ex);
        }
    }

    // Tell "well-formed but forged" apart from "garbage": the first parses once signature checking is off.
    private bool IsSignatureFailure(string csrPem)
    {
        try
        {
            CertificateRequest.LoadSigningRequestPem(csrPem, _hash, CertificateRequestLoadOptions.SkipSignatureValidation);
            return true;
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            return false;
        }
    }

    private static void CheckSubjectAltNames(CertificateRequest request, SpiffeId entitled)
    {
        var extension = SubjectAltNames.Find(request.CertificateExtensions)
            ?? throw new SigningRefusedException(SigningRefusal.NoUriSan, "the CSR has no subjectAltName; it must name exactly one URI SAN, the SPIFFE ID");
        SubjectAltNames.Names names;
        try
        {
            names = SubjectAltNames.Read(extension.RawData);
        }
        catch (CryptographicException ex)
        {
            throw new SigningRefusedException(SigningRefusal.MalformedCsr, ex.Message, ex);
        }

        if (names.OtherCount > 0)
        {
            throw new SigningRefusedException(SigningRefusal.OtherSubjectAltNames, $"the CSR names {names.OtherCount} non-URI SAN(s) (DNS, IP, e-mail...); only the SPIFFE ID is allowed");
        }

        if (names.Uris.Count == 0)
        {
            throw new SigningRefusedException(SigningRefusal.NoUriSan, "the CSR names no URI SAN");
        }

        if (names.Uris.Count > 1)
        {
            throw new SigningRefusedException(SigningRefusal.MultipleUriSans, $"the CSR names {names.Uris.Count} URI SANs ({string.Join(", ", names.Uris)}); exactly one is allowed");
        }

        if (!string.Equals(names.Uris[0], entitled.Value, StringComparison.Ordinal))
        {
            throw new SigningRefusedException(SigningRefusal.IdentityMismatch, $"the CSR asks for '{names.Uris[0]}' but the caller is entitled to '{entitled}'");
        }
    }

    /// <summary>Returns true for RSA (which also gets keyEncipherment); refuses what the mesh does not use.</summary>
    private static bool CheckKey(PublicKey key)
    {
        switch (key.Oid.Value)
        {
            case EcPublicKeyOid:
                using (var ec = key.GetECDsaPublicKey())
                {
                    var curve = ec?.ExportParameters(false).Curve.Oid.Value;
                    if (curve is not (P256Oid or P384Oid))
                    {
                        throw new SigningRefusedException(SigningRefusal.UnsupportedKey, $"EC curve {curve ?? "(unnamed)"} is not supported; use P-256 or P-384");
                    }
                }

                return false;
            case RsaOid:
                using (var rsa = key.GetRSAPublicKey())
                {
                    if (rsa is null || rsa.KeySize < 2048)
                    {
                        throw new SigningRefusedException(SigningRefusal.WeakKey, $"RSA keys must have at least 2048 bits; this one has {rsa?.KeySize}");
                    }
                }

                return true;
            default:
                throw new SigningRefusedException(SigningRefusal.UnsupportedKey, $"key algorithm {key.Oid.FriendlyName ?? key.Oid.Value} is not supported; use EC P-256/P-384 or RSA >= 2048");
        }
    }

    private static void GenerateRoot(string directory, string certPath, string keyPath, CertificateAuthorityOptions options, TimeProvider time)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory);
        }
        else
        {
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var root = NewRoot(key, options, time);

        // Key first: a crash between the two leaves a lone key, which LoadOrCreate refuses rather than replaces.
        FilePermissions.WriteSecretAtomically(keyPath, key.ExportPkcs8PrivateKeyPem() + "\n");
        File.WriteAllText(certPath, root.ExportCertificatePem() + "\n");
    }

    private static X509Certificate2 NewRoot(ECDsa key, CertificateAuthorityOptions options, TimeProvider time)
    {
        // A random tag in the name: during a rotation two roots of one trust domain are trusted side by side, and
        // people (and logs) tell them apart by subject.
        var subject = new X500DistinguishedName($"O={options.TrustDomain}, CN=MeshProxy root CA {Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}");
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(
            X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        var now = Truncate(time.GetUtcNow());
        return request.CreateSelfSigned(now - options.ClockSkewAllowance, now + options.RootValidity);
    }

    private static X509Certificate2 LoadWithKey(string certPath, string keyPath)
    {
        try
        {
            return X509Certificate2.CreateFromPemFile(certPath, keyPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new CertificateAuthorityException($"Cannot load the CA certificate {certPath} with key {keyPath}: {ex.Message}", ex);
        }
    }

    private static X509Certificate2 PublicOnly(X509Certificate2 certificate) => X509CertificateLoader.LoadCertificate(certificate.RawData);

    private static X509AuthorityKeyIdentifierExtension AuthorityKeyIdentifier(X509Certificate2 issuer)
    {
        foreach (var extension in issuer.Extensions)
        {
            if (extension is X509SubjectKeyIdentifierExtension ski)
            {
                return X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(ski);
            }
        }

        return X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(new X509SubjectKeyIdentifierExtension(issuer.PublicKey, critical: false));
    }

    private static byte[] NewSerialNumber()
    {
        var serial = RandomNumberGenerator.GetBytes(16);
        // Positive, and with a non-zero leading byte so that the DER INTEGER keeps all 16 bytes.
        serial[0] = (byte)((serial[0] & 0x7F) | 0x40);
        return serial;
    }

    private static DateTimeOffset Truncate(DateTimeOffset value) => new(value.UtcTicks - (value.UtcTicks % TimeSpan.TicksPerSecond), TimeSpan.Zero);

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;

    public void Dispose() => _signer.Dispose();
}
