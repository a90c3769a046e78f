namespace MeshProxy.Identity.Tests;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class SvidFilesTests : IDisposable
{
    private static readonly SpiffeId Web = SpiffeId.Parse(OpenSslPki.Web);
    private static readonly SpiffeId Api = SpiffeId.Parse(OpenSslPki.Api);
    private readonly TempDirectory _dir = new();
    private readonly ManualTimeProvider _clock = new(DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()));
    private readonly CertificateAuthority _ca;

    public SvidFilesTests()
    {
        _ca = CertificateAuthority.LoadOrCreate(_dir.File("ca"), new CertificateAuthorityOptions { TrustDomain = OpenSslPki.TrustDomain }, _clock);
    }

    private SvidFiles Files => new(_dir.File("state/snapshot.bin"));

    [Fact]
    public void Saved_svid_comes_back_with_its_key_and_bundle_and_the_key_file_is_owner_only()
    {
        var (svid, bundle) = Issue(Web);
        Files.Save(svid, bundle);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Files.KeyPath));
        Assert.Empty(Directory.GetFiles(_dir.File("state"), "*.tmp"));
        var saved = Files.Load(Web, new PeerCertificateVerifier(_clock));
        Assert.Null(saved.Problem);
        Assert.Equal(svid.Certificate.SerialNumber, saved.Svid!.Certificate.SerialNumber);
        Assert.True(saved.Svid.Certificate.HasPrivateKey);
        Assert.Equal(bundle.Pem, saved.Bundle!.Pem);

        // Saving again replaces the set.
        var (next, _) = Issue(Web);
        Files.Save(next, bundle);
        Assert.Equal(next.Certificate.SerialNumber, Files.Load(Web, new PeerCertificateVerifier(_clock)).Svid!.Certificate.SerialNumber);
    }

    [Fact]
    public void Nothing_saved_is_not_a_problem()
    {
        var saved = Files.Load(Web, new PeerCertificateVerifier(_clock));
        Assert.True(saved.None);
    }

    [Fact]
    public void An_expired_svid_is_refused_with_the_reason()
    {
        var (svid, bundle) = Issue(Web);
        Files.Save(svid, bundle);
        _clock.AdvanceTo(svid.NotAfter + TimeSpan.FromSeconds(1));

        var saved = Files.Load(Web, new PeerCertificateVerifier(_clock));
        Assert.Null(saved.Svid);
        Assert.Contains("Expired", saved.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void An_svid_for_another_workload_is_refused()
    {
        var (svid, bundle) = Issue(Api);
        Files.Save(svid, bundle);

        var saved = Files.Load(Web, new PeerCertificateVerifier(_clock));
        Assert.Null(saved.Svid);
        Assert.Contains($"it is for {Api}", saved.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void An_svid_from_another_ca_than_its_saved_bundle_is_refused()
    {
        var (svid, _) = Issue(Web);
        using var other = CertificateAuthority.LoadOrCreate(_dir.File("other-ca"), new CertificateAuthorityOptions { TrustDomain = OpenSslPki.TrustDomain }, _clock);
        Files.Save(svid, other.TrustBundle);

        var saved = Files.Load(Web, new PeerCertificateVerifier(_clock));
        Assert.Null(saved.Svid);
        Assert.Contains("peers would refuse it", saved.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_that_does_not_match_the_chain_or_is_readable_by_others_is_refused()
    {
        var (first, bundle) = Issue(Web);
        var (second, _) = Issue(Web);
        Files.Save(first, bundle);
        var firstKey = File.ReadAllText(Files.KeyPath);
        Files.Save(second, bundle);
        File.WriteAllText(Files.KeyPath, firstKey); // a crash between the renames of the chain and the key
        Assert.NotNull(Files.Load(Web, new PeerCertificateVerifier(_clock)).Problem);

        Files.Save(second, bundle);
        File.SetUnixFileMode(Files.KeyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        var saved = Files.Load(Web, new PeerCertificateVerifier(_clock));
        Assert.Null(saved.Svid);
        Assert.Contains("chmod 600", saved.Problem, StringComparison.Ordinal);
    }

    private (X509Svid Svid, TrustBundle Bundle) Issue(SpiffeId id)
    {
        using var key = WorkloadKey.Create();
        var issued = _ca.Sign(key.CreateSigningRequestPem(id), id);
        return (X509Svid.Create(key, issued.CertificateChainPem, id), TrustBundle.FromPem(issued.TrustBundlePem));
    }

    public void Dispose()
    {
        _ca.Dispose();
        _dir.Dispose();
    }
}
