using System.Security.Cryptography.X509Certificates;

namespace MeshProxy.Identity.Tests;

/// <summary>The verifier against certificates made by the real openssl CLI, each wrong in one way.</summary>
public sealed class PeerCertificateVerifierTests(OpenSslPki pki)
{
    private readonly PeerCertificateVerifier _verifier = new();

    [Theory]
    [InlineData("good", PeerRole.Client, PeerVerificationFailure.None)]
    [InlineData("good", PeerRole.Server, PeerVerificationFailure.None)]
    [InlineData("expired", PeerRole.Client, PeerVerificationFailure.Expired)]
    [InlineData("notYetValid", PeerRole.Client, PeerVerificationFailure.NotYetValid)]
    [InlineData("otherCa", PeerRole.Client, PeerVerificationFailure.UntrustedIssuer)]
    [InlineData("otherTrustDomain", PeerRole.Client, PeerVerificationFailure.WrongTrustDomain)]
    [InlineData("noUriSan", PeerRole.Client, PeerVerificationFailure.NoUriSan)]
    [InlineData("twoUriSans", PeerRole.Client, PeerVerificationFailure.MultipleUriSans)]
    [InlineData("notSpiffe", PeerRole.Client, PeerVerificationFailure.NotSpiffe)]
    [InlineData("keyCertSignOnly", PeerRole.Client, PeerVerificationFailure.WrongKeyUsage)]
    [InlineData("serverAuthOnly", PeerRole.Client, PeerVerificationFailure.WrongKeyUsage)]
    [InlineData("serverAuthOnly", PeerRole.Server, PeerVerificationFailure.None)]
    [InlineData("selfSigned", PeerRole.Client, PeerVerificationFailure.SelfSigned)]
    [InlineData("caAsLeaf", PeerRole.Client, PeerVerificationFailure.IsCa)]
    [InlineData("rootA", PeerRole.Client, PeerVerificationFailure.IsCa)]
    [InlineData("rsa1024", PeerRole.Client, PeerVerificationFailure.WeakCryptography)]
    [InlineData("rsa1024", PeerRole.Server, PeerVerificationFailure.WeakCryptography)]
    [InlineData("p224", PeerRole.Client, PeerVerificationFailure.WeakCryptography)]
    [InlineData("sha1Signed", PeerRole.Client, PeerVerificationFailure.WeakCryptography)]
    [InlineData("rsa2048", PeerRole.Client, PeerVerificationFailure.None)]
    public void Classifies_openssl_made_certificates(string name, PeerRole role, PeerVerificationFailure expected)
    {
        using var certificate = X509CertificateLoader.LoadCertificateFromFile(pki.CertPath(name));

        var result = _verifier.Verify(certificate, null, pki.Bundle("rootA"), OpenSslPki.TrustDomain, role);

        Assert.Equal(expected, result.Failure);
        Assert.Equal(expected == PeerVerificationFailure.None, result.IsValid);
        Assert.False(string.IsNullOrWhiteSpace(result.Message));
        if (result.IsValid)
        {
            Assert.Equal(OpenSslPki.Web, result.SpiffeId!.Value);
        }
        else
        {
            Assert.Null(result.SpiffeId);
        }
    }

    [Fact]
    public void No_certificate_is_a_failure() =>
        Assert.Equal(PeerVerificationFailure.NoCertificate, _verifier.Verify(null, null, pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Client).Failure);

    [Fact]
    public void Identity_outside_the_allowed_set_is_refused()
    {
        using var api = X509CertificateLoader.LoadCertificateFromFile(pki.CertPath("api"));
        HashSet<SpiffeId> allowed = [SpiffeId.Parse(OpenSslPki.Web)];

        Assert.Equal(PeerVerificationFailure.IdentityNotAllowed, _verifier.Verify(api, null, pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Server, allowed).Failure);
        allowed.Add(SpiffeId.Parse(OpenSslPki.Api));
        Assert.True(_verifier.Verify(api, null, pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Server, allowed).IsValid);
    }

    [Fact]
    public void Leaf_under_an_intermediate_needs_the_intermediate_and_trusts_only_the_bundle()
    {
        using var leaf = X509CertificateLoader.LoadCertificateFromFile(pki.CertPath("viaInter"));
        var inter = new X509Certificate2Collection(X509CertificateLoader.LoadCertificateFromFile(pki.CertPath("interA")));

        Assert.True(_verifier.Verify(leaf, inter, pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Client).IsValid);
        Assert.Equal(PeerVerificationFailure.UntrustedIssuer, _verifier.Verify(leaf, null, pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Client).Failure);
        Assert.Equal(PeerVerificationFailure.UntrustedIssuer, _verifier.Verify(leaf, inter, pki.Bundle("rootB"), OpenSslPki.TrustDomain, PeerRole.Client).Failure);
    }

    [Fact]
    public void A_peer_cannot_smuggle_its_own_root_in_the_extra_chain()
    {
        using var leaf = X509CertificateLoader.LoadCertificateFromFile(pki.CertPath("otherCa"));
        var extra = new X509Certificate2Collection(X509CertificateLoader.LoadCertificateFromFile(pki.CertPath("rootB")));

        Assert.Equal(PeerVerificationFailure.UntrustedIssuer, _verifier.Verify(leaf, extra, pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Client).Failure);
    }

    [Fact]
    public void Time_comes_from_the_time_provider()
    {
        using var good = X509CertificateLoader.LoadCertificateFromFile(pki.CertPath("good"));
        var later = new PeerCertificateVerifier(new ManualTimeProvider(DateTimeOffset.UtcNow + TimeSpan.FromDays(60)));
        Assert.Equal(PeerVerificationFailure.Expired, later.Verify(good, null, pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Client).Failure);
    }
}

public sealed class TrustBundleTests(OpenSslPki pki)
{
    [Fact]
    public void Certificates_from_either_root_of_a_two_root_bundle_verify()
    {
        var bundle = pki.Bundle("rootA").Merge(pki.Bundle("rootB"));
        Assert.Equal(2, bundle.Roots.Length);
        var verifier = new PeerCertificateVerifier();
        foreach (var name in new[] { "good", "otherCa" })
        {
            using var leaf = X509CertificateLoader.LoadCertificateFromFile(pki.CertPath(name));
            var result = verifier.Verify(leaf, null, bundle, OpenSslPki.TrustDomain, PeerRole.Client);
            Assert.True(result.IsValid, $"{name}: {result}");
        }

        // Dropping the old root after the rotation ends trust in what it issued.
        using var old = X509CertificateLoader.LoadCertificateFromFile(pki.CertPath("good"));
        Assert.Equal(PeerVerificationFailure.UntrustedIssuer, verifier.Verify(old, null, pki.Bundle("rootB"), OpenSslPki.TrustDomain, PeerRole.Client).Failure);
    }

    [Fact]
    public void Round_trips_through_pem_and_drops_duplicates()
    {
        var bundle = pki.Bundle("rootA", "rootB", "rootA");
        Assert.Equal(2, bundle.Roots.Length);
        var again = TrustBundle.FromPem(bundle.Pem);
        Assert.Equal(bundle.Roots.Select(r => r.Thumbprint), again.Roots.Select(r => r.Thumbprint));
        Assert.True(again.Contains(X509CertificateLoader.LoadCertificateFromFile(pki.CertPath("rootB"))));
    }

    [Fact]
    public void Refuses_empty_input_and_non_ca_certificates()
    {
        Assert.ThrowsAny<System.Security.Cryptography.CryptographicException>(() => TrustBundle.FromPem("no pem here"));
        Assert.ThrowsAny<System.Security.Cryptography.CryptographicException>(() => TrustBundle.FromPem(File.ReadAllText(pki.CertPath("good"))));
    }
}
