using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity.Internal;

namespace MeshProxy.Identity.Tests;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class CertificateAuthorityTests(OpenSslPki pki) : IDisposable
{
    private static readonly SpiffeId Web = SpiffeId.Parse(OpenSslPki.Web);
    private readonly TempDirectory _dir = new();
    private readonly ManualTimeProvider _clock = new(DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()));

    private CertificateAuthorityOptions Options => new() { TrustDomain = OpenSslPki.TrustDomain };

    [Fact]
    public void Issues_a_leaf_with_exactly_the_right_san_usages_and_validity()
    {
        using var ca = CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock);
        using var key = WorkloadKey.Create();

        var issued = ca.Sign(key.CreateSigningRequestPem(Web), Web);

        var chain = Certificates.ReadAll(issued.CertificateChainPem, "chain");
        Assert.Single(chain);
        var leaf = chain[0];
        Assert.Empty(leaf.SubjectName.RawData.Skip(2)); // an empty SEQUENCE: 30 00
        var san = leaf.Extensions.Single(e => e.Oid!.Value == SubjectAltNames.Oid);
        Assert.True(san.Critical);
        var names = SubjectAltNames.Read(san.RawData);
        Assert.Equal([OpenSslPki.Web], names.Uris);
        Assert.Equal(0, names.OtherCount);

        var basic = leaf.Extensions.OfType<X509BasicConstraintsExtension>().Single();
        Assert.False(basic.CertificateAuthority);
        Assert.True(basic.Critical);
        var usage = leaf.Extensions.OfType<X509KeyUsageExtension>().Single();
        Assert.Equal(X509KeyUsageFlags.DigitalSignature, usage.KeyUsages);
        Assert.True(usage.Critical);
        var eku = leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single();
        Assert.Equal(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"], eku.EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value).Order());

        var ski = leaf.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single();
        Assert.NotNull(ski.SubjectKeyIdentifier);
        var aki = leaf.Extensions.OfType<X509AuthorityKeyIdentifierExtension>().Single();
        var rootSki = ca.SigningCertificate.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single();
        Assert.Equal(Convert.FromHexString(rootSki.SubjectKeyIdentifier!), aki.KeyIdentifier!.Value.ToArray());

        Assert.Equal(_clock.GetUtcNow() - TimeSpan.FromMinutes(1), Certificates.NotBefore(leaf));
        Assert.Equal(_clock.GetUtcNow() + TimeSpan.FromHours(24), Certificates.NotAfter(leaf));
        Assert.Equal(32, leaf.SerialNumber.Length);

        // The real openssl agrees: it chains to the root and is fit for both TLS roles.
        File.WriteAllText(_dir.File("leaf.pem"), issued.CertificateChainPem);
        File.WriteAllText(_dir.File("bundle.pem"), issued.TrustBundlePem);
        foreach (var purpose in new[] { "sslclient", "sslserver" })
        {
            Assert.Contains("OK", Run.Checked("openssl", "verify", "-purpose", purpose, "-CAfile", _dir.File("bundle.pem"), _dir.File("leaf.pem")));
        }

        var result = new PeerCertificateVerifier(_clock).Verify(leaf, null, ca.TrustBundle, OpenSslPki.TrustDomain, PeerRole.Client);
        Assert.True(result.IsValid, result.ToString());
        Assert.Equal(Web, result.SpiffeId);
    }

    [Fact]
    public void Rsa_keys_of_2048_bits_get_key_encipherment_too()
    {
        using var ca = CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock);
        using var rsa = RSA.Create(2048);
        var issued = ca.Sign(Csr(rsa, Web.Value), Web);
        var leaf = Certificates.ReadAll(issued.CertificateChainPem, "chain")[0];
        Assert.Equal(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, leaf.Extensions.OfType<X509KeyUsageExtension>().Single().KeyUsages);
    }

    public static TheoryData<string, SigningRefusal> BadRequests => new()
    {
        { "other-id", SigningRefusal.IdentityMismatch },
        { "two-uris", SigningRefusal.MultipleUriSans },
        { "no-san", SigningRefusal.NoUriSan },
        { "dns-san", SigningRefusal.OtherSubjectAltNames },
        { "bad-signature", SigningRefusal.BadSignature },
        { "rsa-1024", SigningRefusal.WeakKey },
        { "p521", SigningRefusal.UnsupportedKey },
        { "garbage", SigningRefusal.MalformedCsr },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public void Refuses_bad_requests_with_a_typed_reason(string kind, SigningRefusal expected)
    {
        using var ca = CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock);
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = kind switch
        {
            "other-id" => Csr(ec, "spiffe://example.org/ns/default/sa/admin"),
            "two-uris" => Csr(ec, Web.Value, "spiffe://example.org/ns/default/sa/api"),
            "no-san" => Csr(ec),
            "dns-san" => CsrWithDns(ec, Web.Value, "web.default.svc"),
            "bad-signature" => Tamper(Csr(ec, Web.Value)),
            "rsa-1024" => Csr(RSA.Create(1024), Web.Value),
            "p521" => Csr(ECDsa.Create(ECCurve.NamedCurves.nistP521), Web.Value),
            _ => "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        };

        var ex = Assert.Throws<SigningRefusedException>(() => ca.Sign(csr, Web));
        Assert.Equal(expected, ex.Reason);
        Assert.False(string.IsNullOrWhiteSpace(ex.Message));
    }

    [Fact]
    public void Ttl_above_the_maximum_is_clamped_and_a_non_positive_one_refused()
    {
        using var ca = CertificateAuthority.LoadOrCreate(_dir.Path, Options with { MaxTtl = TimeSpan.FromHours(48) }, _clock);
        using var key = WorkloadKey.Create();
        var csr = key.CreateSigningRequestPem(Web);

        var leaf = Certificates.ReadAll(ca.Sign(csr, Web, TimeSpan.FromDays(30)).CertificateChainPem, "chain")[0];
        Assert.Equal(_clock.GetUtcNow() + TimeSpan.FromHours(48), Certificates.NotAfter(leaf));

        var shortLeaf = Certificates.ReadAll(ca.Sign(csr, Web, TimeSpan.FromHours(1)).CertificateChainPem, "chain")[0];
        Assert.Equal(_clock.GetUtcNow() + TimeSpan.FromHours(1), Certificates.NotAfter(shortLeaf));

        Assert.Equal(SigningRefusal.InvalidTtl, Assert.Throws<SigningRefusedException>(() => ca.Sign(csr, Web, TimeSpan.Zero)).Reason);
    }

    [Fact]
    public void Refuses_identities_outside_its_trust_domain()
    {
        using var ca = CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock);
        using var key = WorkloadKey.Create();
        var foreign = SpiffeId.ForWorkload("other.org", "default", "web");
        Assert.Equal(SigningRefusal.ForeignTrustDomain, Assert.Throws<SigningRefusedException>(() => ca.Sign(key.CreateSigningRequestPem(foreign), foreign)).Reason);
    }

    [Fact]
    public void Leaf_never_outlives_the_ca()
    {
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=short-lived root", rootKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        var now = _clock.GetUtcNow();
        using var root = request.CreateSelfSigned(now - TimeSpan.FromDays(1), now + TimeSpan.FromHours(2));
        File.WriteAllText(_dir.File("r.pem"), root.ExportCertificatePem());
        File.WriteAllText(_dir.File("r.key"), rootKey.ExportPkcs8PrivateKeyPem());

        using var ca = CertificateAuthority.LoadFromPemFiles(_dir.File("r.pem"), _dir.File("r.key"), _dir.File("r.pem"), Options, _clock);
        using var key = WorkloadKey.Create();
        var leaf = Certificates.ReadAll(ca.Sign(key.CreateSigningRequestPem(Web), Web).CertificateChainPem, "chain")[0];
        Assert.Equal(Certificates.NotAfter(root), Certificates.NotAfter(leaf));

        _clock.Advance(TimeSpan.FromHours(3));
        Assert.Equal(SigningRefusal.CaNotValid, Assert.Throws<SigningRefusedException>(() => ca.Sign(key.CreateSigningRequestPem(Web), Web)).Reason);
    }

    [Fact]
    public void Generated_key_is_mode_0600_and_reloads_as_the_same_root()
    {
        string thumbprint;
        using (var first = CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock))
        {
            thumbprint = first.SigningCertificate.Thumbprint;
        }

        var keyPath = _dir.File(CertificateAuthority.RootKeyFileName);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyPath));

        using var second = CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock);
        Assert.Equal(thumbprint, second.SigningCertificate.Thumbprint);
        using var key = WorkloadKey.Create();
        var leaf = Certificates.ReadAll(second.Sign(key.CreateSigningRequestPem(Web), Web).CertificateChainPem, "chain")[0];
        var bundleFromDisk = TrustBundle.FromPem(File.ReadAllText(_dir.File(CertificateAuthority.RootCertFileName)));
        Assert.True(new PeerCertificateVerifier(_clock).Verify(leaf, null, bundleFromDisk, OpenSslPki.TrustDomain, PeerRole.Server).IsValid);
    }

    [Fact]
    public void Refuses_a_key_file_readable_by_others()
    {
        using (CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock))
        {
        }

        var keyPath = _dir.File(CertificateAuthority.RootKeyFileName);
        File.SetUnixFileMode(keyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        var ex = Assert.Throws<CertificateAuthorityException>(() => CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock));
        Assert.Contains("0644", ex.Message);
        Assert.Contains("chmod 600", ex.Message);
    }

    [Fact]
    public void Refuses_a_directory_with_only_one_of_the_two_files()
    {
        using (CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock))
        {
        }

        File.Delete(_dir.File(CertificateAuthority.RootCertFileName));
        var ex = Assert.Throws<CertificateAuthorityException>(() => CertificateAuthority.LoadOrCreate(_dir.Path, Options, _clock));
        Assert.Contains(CertificateAuthority.RootCertFileName, ex.Message);
        Assert.True(File.Exists(_dir.File(CertificateAuthority.RootKeyFileName)));
    }

    [Fact]
    public void Operator_intermediate_issues_certificates_that_verify_against_the_operator_root()
    {
        using var ca = CertificateAuthority.LoadFromPemFiles(pki.Path("interA-chain.pem"), pki.KeyPath("interA"), pki.CertPath("rootA"), Options);
        using var key = WorkloadKey.Create();
        var issued = ca.Sign(key.CreateSigningRequestPem(Web), Web);

        var chain = Certificates.ReadAll(issued.CertificateChainPem, "chain");
        Assert.Equal(2, chain.Count);
        Assert.Equal(pki.Load("interA").Thumbprint, chain[1].Thumbprint);
        Assert.Equal(pki.Bundle("rootA").Pem, issued.TrustBundlePem);

        var result = new PeerCertificateVerifier().Verify(chain[0], new X509Certificate2Collection(chain[1]), pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Client);
        Assert.True(result.IsValid, result.ToString());
        // Without the intermediate the leaf does not chain.
        Assert.Equal(PeerVerificationFailure.UntrustedIssuer, new PeerCertificateVerifier().Verify(chain[0], null, pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Client).Failure);

        File.WriteAllText(_dir.File("leaf.pem"), chain[0].ExportCertificatePem());
        Assert.Contains("OK", Run.Checked("openssl", "verify", "-CAfile", pki.CertPath("rootA"), "-untrusted", pki.CertPath("interA"), _dir.File("leaf.pem")));
    }

    [Fact]
    public void Operator_material_that_does_not_fit_together_is_refused()
    {
        Assert.Throws<CertificateAuthorityException>(() =>
            CertificateAuthority.LoadFromPemFiles(pki.Path("interA-chain.pem"), pki.KeyPath("rootA"), pki.CertPath("rootA"), Options));
        Assert.Throws<CertificateAuthorityException>(() =>
            CertificateAuthority.LoadFromPemFiles(pki.Path("interA-chain.pem"), pki.KeyPath("interA"), pki.CertPath("rootB"), Options));
        Assert.Throws<CertificateAuthorityException>(() =>
            CertificateAuthority.LoadFromPemFiles(pki.CertPath("good"), pki.KeyPath("good"), pki.CertPath("rootA"), Options));
    }

    private static string Csr(AsymmetricAlgorithm key, params string[] uris) => Csr(key, uris, null);

    private static string CsrWithDns(AsymmetricAlgorithm key, string uri, string dns) => Csr(key, [uri], dns);

    private static string Csr(AsymmetricAlgorithm key, string[] uris, string? dns)
    {
        var request = key switch
        {
            ECDsa ec => new CertificateRequest("CN=w", ec, HashAlgorithmName.SHA256),
            RSA rsa => new CertificateRequest("CN=w", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
            _ => throw new ArgumentException("unsupported key type", nameof(key)),
        };
        if (uris.Length > 0 || dns is not null)
        {
            var san = new SubjectAlternativeNameBuilder();
            foreach (var uri in uris)
            {
                san.AddUri(new Uri(uri));
            }

            if (dns is not null)
            {
                san.AddDnsName(dns);
            }

            request.CertificateExtensions.Add(san.Build());
        }

        return request.CreateSigningRequestPem();
    }

    // Flips a bit in the last byte of the DER, which lies inside the signature: still parseable, no longer valid.
    private static string Tamper(string csrPem)
    {
        var der = Convert.FromBase64String(string.Concat(csrPem.Split('\n').Where(l => !l.StartsWith("-----", StringComparison.Ordinal))));
        der[^1] ^= 0x01;
        return PemEncoding.WriteString("CERTIFICATE REQUEST", der);
    }

    public void Dispose() => _dir.Dispose();
}
