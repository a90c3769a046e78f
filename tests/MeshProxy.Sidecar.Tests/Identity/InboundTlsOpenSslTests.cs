using System.Diagnostics;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>One STRICT mTLS sidecar, shared by the tests of this class, probed with the real openssl s_client (and sslscan).</summary>
public sealed class InboundTlsFixture : IAsyncLifetime
{
    internal MtlsMesh Mesh { get; private set; } = null!;

    internal int Port => Mesh.Billing.Inbound.Port;

    public async ValueTask InitializeAsync() => Mesh = await MtlsMesh.StartAsync();

    public async ValueTask DisposeAsync() => await Mesh.DisposeAsync();
}

public sealed class InboundTlsOpenSslTests(InboundTlsFixture fixture) : IClassFixture<InboundTlsFixture>
{
    private LogCapture Log => fixture.Mesh.BillingLog;

    private Sidecar.Identity.TlsCounters Counters => fixture.Mesh.Billing.Identity.Counters;

    [Theory]
    [InlineData("-tls1_2", "TLSv1.2")]
    [InlineData("-tls1_3", "TLSv1.3")]
    public async Task Tls12_and_13_with_a_client_certificate_succeed(string flag, string expected)
    {
        await using var client = MeshPki.Connect(fixture.Port, "store", flag, "-brief");
        Assert.True(await client.GetAsync("/hello", 1), client.Output);
        Assert.Contains($"Protocol version: {expected}", client.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tls13_is_preferred()
    {
        await using var client = MeshPki.Connect(fixture.Port, "store", "-brief");
        Assert.True(await client.GetAsync("/", 1), client.Output);
        Assert.Contains("Protocol version: TLSv1.3", client.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-tls1")]
    [InlineData("-tls1_1")]
    public async Task Tls10_and_11_are_refused(string flag)
    {
        // SECLEVEL=0 so that the local openssl is willing to try; the refusal must come from the sidecar.
        var failuresBefore = Counters.InboundHandshakeFailures;
        await using var client = MeshPki.Connect(fixture.Port, "store", flag, "-cipher", "DEFAULT:@SECLEVEL=0");
        Assert.NotEqual(0, await client.ExitCodeAsync());
        Assert.DoesNotContain("HTTP/1.1", client.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("no protocols available", client.Output, StringComparison.Ordinal);
        Assert.Contains("Cipher is (NONE)", client.Output, StringComparison.Ordinal);
        await Eventually.TrueAsync(() => Counters.InboundHandshakeFailures > failuresBefore, "the sidecar to count the failed handshake");
    }

    [Theory]
    [InlineData("ffdhe2048")]
    [InlineData("ffdhe8192")]
    public async Task Finite_field_key_exchange_is_refused(string group)
    {
        // ffdhe8192 costs the sidecar ~160 ms of CPU per handshake, before any certificate is checked.
        var failuresBefore = Counters.InboundHandshakeFailures;
        await using var client = MeshPki.Connect(fixture.Port, "store", "-tls1_3", "-groups", group);
        Assert.NotEqual(0, await client.ExitCodeAsync());
        Assert.DoesNotContain("HTTP/1.1", client.Stdout, StringComparison.Ordinal);
        await Eventually.TrueAsync(() => Counters.InboundHandshakeFailures > failuresBefore, "the sidecar to count the failed handshake");
    }

    [Theory]
    [InlineData("X25519", "X25519")]
    [InlineData("P-256", "prime256v1")]
    [InlineData("P-384", "secp384r1")]
    public async Task Elliptic_curve_key_exchange_is_accepted(string group, string shown)
    {
        await using var client = MeshPki.Connect(fixture.Port, "store", "-tls1_3", "-groups", group, "-brief");
        Assert.True(await client.GetAsync("/hello", 1), client.Output);
        Assert.Contains(shown, client.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("AES128-SHA")]                     // RSA key exchange, CBC, SHA-1
    [InlineData("AES128-GCM-SHA256")]              // RSA key exchange: no forward secrecy
    [InlineData("ECDHE-ECDSA-AES128-SHA")]         // CBC with SHA-1
    [InlineData("ECDHE-ECDSA-AES256-SHA384")]      // CBC
    [InlineData("ECDHE-RSA-AES128-SHA256")]        // CBC
    [InlineData("DHE-RSA-AES128-GCM-SHA256")]      // finite-field DH
    public async Task Weak_tls12_cipher_suites_are_refused(string cipher)
    {
        var failuresBefore = Counters.InboundHandshakeFailures;
        await using var client = MeshPki.Connect(fixture.Port, "store", "-tls1_2", "-cipher", cipher + ":@SECLEVEL=0");
        Assert.NotEqual(0, await client.ExitCodeAsync());
        Assert.DoesNotContain("no cipher match", client.Output, StringComparison.Ordinal);
        Assert.Contains("Cipher is (NONE)", client.Output, StringComparison.Ordinal);
        await Eventually.TrueAsync(() => Counters.InboundHandshakeFailures > failuresBefore, "the sidecar to count the failed handshake");
    }

    [Theory]
    [InlineData("ECDHE-ECDSA-AES128-GCM-SHA256")]
    [InlineData("ECDHE-ECDSA-AES256-GCM-SHA384")]
    [InlineData("ECDHE-ECDSA-CHACHA20-POLY1305")]
    public async Task Strong_tls12_cipher_suites_are_accepted(string cipher)
    {
        await using var client = MeshPki.Connect(fixture.Port, "store", "-tls1_2", "-cipher", cipher, "-quiet");
        Assert.True(await client.GetAsync("/", 1), client.Output);
    }

    [Fact]
    public async Task Sslscan_finds_only_tls12_and_13_and_aead_suites()
    {
        if (!File.Exists("/usr/bin/sslscan"))
        {
            Assert.Skip("sslscan is not installed (apt-get install -y sslscan)");
        }

        var info = new ProcessStartInfo("sslscan", ["--no-colour", "--no-heartbleed", $"127.0.0.1:{fixture.Port}"]) { RedirectStandardOutput = true, UseShellExecute = false };
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        Assert.True(process.WaitForExit(60_000), "sslscan did not finish in 60 s");
        var text = await output;
        Assert.Matches(@"TLSv1\.0\s+disabled", text);
        Assert.Matches(@"TLSv1\.1\s+disabled", text);
        Assert.Matches(@"TLSv1\.2\s+enabled", text);
        Assert.Matches(@"TLSv1\.3\s+enabled", text);
        var accepted = text.Split('\n').Where(l => l.StartsWith("Preferred", StringComparison.Ordinal) || l.StartsWith("Accepted", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(accepted);
        Assert.All(accepted, line => Assert.Matches("(GCM|CHACHA20)", line));
        Assert.All(accepted, line => Assert.DoesNotMatch("(CBC|SHA1|RC4|DES|NULL|EXP)", line.Replace("SHA1 ", string.Empty, StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("expired", PeerVerificationFailure.Expired)]
    [InlineData("notYetValid", PeerVerificationFailure.NotYetValid)]
    [InlineData("otherCa", PeerVerificationFailure.UntrustedIssuer)]
    [InlineData("otherTrustDomain", PeerVerificationFailure.WrongTrustDomain)]
    [InlineData("noUriSan", PeerVerificationFailure.NoUriSan)]
    [InlineData("twoUriSans", PeerVerificationFailure.MultipleUriSans)]
    [InlineData("wrongKeyUsage", PeerVerificationFailure.WrongKeyUsage)]
    [InlineData("selfSigned", PeerVerificationFailure.SelfSigned)]
    [InlineData(null, PeerVerificationFailure.NoCertificate)]
    public async Task A_bad_client_certificate_is_refused_with_one_log_line_and_other_connections_go_on(string? certificate, PeerVerificationFailure reason)
    {
        await using var held = MeshPki.Connect(fixture.Port, "store", "-quiet");
        Assert.True(await held.GetAsync("/hello", 1), "the good connection did not work: " + held.Output);
        var countBefore = Counters.InboundRefusedFor(reason);
        var linesBefore = Log.WithEvent(401).Count;

        await using (var bad = MeshPki.Connect(fixture.Port, certificate, "-quiet"))
        {
            Assert.False(await bad.GetAsync("/hello", 1, timeoutMs: 3_000), "a bad certificate got an answer: " + bad.Output);
        }

        await Eventually.TrueAsync(() => Counters.InboundRefusedFor(reason) == countBefore + 1, $"the {reason} counter to go up by one");
        var lines = Log.WithEvent(401).Skip(linesBefore).ToList();
        var line = Assert.Single(lines);
        Assert.Contains(reason.ToString(), line, StringComparison.Ordinal);

        Assert.True(await held.GetAsync("/hello", 2), "the held connection broke: " + held.Output);
    }
}
