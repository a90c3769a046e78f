using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Authentication;

namespace MeshProxy.Identity.Tests;

/// <summary>A real TLS server using the verifier, against the real openssl s_client.</summary>
public sealed class TlsHandshakeTests(OpenSslPki pki)
{
    private readonly ConcurrentQueue<PeerVerificationResult> _verdicts = new();

    private TlsEchoServer StartServer()
    {
        var bundle = pki.Bundle("rootA");
        var callback = new PeerCertificateVerifier().CreateCallback(() => bundle, OpenSslPki.TrustDomain, PeerRole.Client, onResult: _verdicts.Enqueue);
        var context = SslStreamCertificateContext.Create(pki.Load("server"), null, offline: true);
        return new TlsEchoServer(() => new SslServerAuthenticationOptions
        {
            ServerCertificateContext = context,
            ClientCertificateRequired = true,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            RemoteCertificateValidationCallback = callback,
        });
    }

    [Theory]
    [InlineData("-tls1_3")]
    [InlineData("-tls1_2")]
    public async Task Good_client_certificate_is_accepted_and_bad_ones_fail_while_a_held_connection_keeps_working(string version)
    {
        await using var server = StartServer();

        await using var held = pki.Connect(server.Port, "good", version);
        Assert.True(await held.EchoAsync("hello-1"), $"good client got no echo: {held.Stderr}");
        Assert.Null(server.NextHandshake());
        Assert.True(_verdicts.TryDequeue(out var verdict) && verdict.IsValid && verdict.SpiffeId!.Value == OpenSslPki.Web);

        var cases = new (string? Cert, PeerVerificationFailure Expected)[]
        {
            ("expired", PeerVerificationFailure.Expired),
            ("notYetValid", PeerVerificationFailure.NotYetValid),
            ("otherCa", PeerVerificationFailure.UntrustedIssuer),
            ("otherTrustDomain", PeerVerificationFailure.WrongTrustDomain),
            ("noUriSan", PeerVerificationFailure.NoUriSan),
            ("twoUriSans", PeerVerificationFailure.MultipleUriSans),
            ("serverAuthOnly", PeerVerificationFailure.WrongKeyUsage),
            ("selfSigned", PeerVerificationFailure.SelfSigned),
            ("caAsLeaf", PeerVerificationFailure.IsCa),
            (null, PeerVerificationFailure.NoCertificate),
            ("rsa1024", PeerVerificationFailure.WeakCryptography),
            ("sha1Signed", PeerVerificationFailure.WeakCryptography),
        };

        foreach (var (cert, expected) in cases)
        {
            // SECLEVEL=0: this OpenSSL would not even send a 1024-bit or SHA-1 certificate; the refusal must be the server's.
            await using var bad = pki.Connect(server.Port, cert, version, "-cipher", "DEFAULT@SECLEVEL=0");
            Assert.False(await bad.EchoAsync($"must-not-echo-{cert}", timeoutMs: 3_000), $"{cert}: the server echoed");
            Assert.NotNull(await bad.ExitCodeAsync());
            Assert.IsAssignableFrom<AuthenticationException>(server.NextHandshake());
            Assert.True(_verdicts.TryDequeue(out var refused), $"{cert}: the verifier was not asked");
            Assert.Equal(expected, refused.Failure);
        }

        Assert.True(await held.EchoAsync("hello-2"), $"the held connection broke: {held.Stderr}");
    }

    /// <summary>
    /// A workload certificate issued under an intermediate (Istio's plug-in CA layout: the bundle holds the root only)
    /// is accepted when the client sends the intermediate: from openssl with -cert_chain, and from our own client
    /// presenting an <see cref="X509Svid"/>'s context, which is what a sidecar sends.
    /// </summary>
    [Theory]
    [InlineData("-tls1_3")]
    [InlineData("-tls1_2")]
    public async Task A_leaf_under_an_intermediate_is_accepted_when_the_client_sends_its_chain(string version)
    {
        await using var server = StartServer();

        await using var openssl = pki.Connect(server.Port, "viaInter", version, "-cert_chain", pki.CertPath("interA"));
        Assert.True(await openssl.EchoAsync("via-intermediate"), $"openssl with the chain got no echo: {openssl.Stderr}");
        Assert.True(_verdicts.TryDequeue(out var verdict) && verdict.IsValid, $"{verdict}");

        var svid = X509Svid.FromPem(
            File.ReadAllText(pki.CertPath("viaInter")) + File.ReadAllText(pki.CertPath("interA")),
            File.ReadAllText(pki.KeyPath("viaInter")));
        Assert.Single(svid.Intermediates);
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(System.Net.IPAddress.Loopback, server.Port, TestContext.Current.CancellationToken);
        await using var ssl = new SslStream(tcp.GetStream());
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            ClientCertificateContext = svid.CertificateContext,
            EnabledSslProtocols = version == "-tls1_3" ? SslProtocols.Tls13 : SslProtocols.Tls12,
            RemoteCertificateValidationCallback = new PeerCertificateVerifier().CreateCallback(() => pki.Bundle("rootA"), OpenSslPki.TrustDomain, PeerRole.Server),
        }, TestContext.Current.CancellationToken);
        var hello = "from-svid\n"u8.ToArray();
        await ssl.WriteAsync(hello, TestContext.Current.CancellationToken);
        var echo = new byte[hello.Length];
        await ssl.ReadExactlyAsync(echo, TestContext.Current.CancellationToken);
        Assert.Equal(hello, echo);
        Assert.True(_verdicts.TryDequeue(out var ours) && ours.IsValid && ours.SpiffeId!.Value == OpenSslPki.Web, $"{ours}");

        // Without the intermediate, the same leaf is refused: the bundle holds only the root.
        await using var bare = pki.Connect(server.Port, "viaInter", version);
        Assert.False(await bare.EchoAsync("must-not-echo", timeoutMs: 3_000));
        Assert.True(_verdicts.TryDequeue(out var refused) && refused.Failure == PeerVerificationFailure.UntrustedIssuer, $"{refused}");
    }

    [Fact]
    public async Task Tls_1_1_is_refused()
    {
        await using var server = StartServer();
        // SECLEVEL=0 lets this OpenSSL offer TLS 1.1 at all, so the refusal is the server's.
        await using var old = pki.Connect(server.Port, "good", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0");

        Assert.False(await old.EchoAsync("must-not-echo", timeoutMs: 3_000));
        Assert.NotEqual(0, await old.ExitCodeAsync());
        Assert.IsAssignableFrom<AuthenticationException>(server.NextHandshake());
        Assert.Empty(_verdicts);
    }

    [Theory]
    [InlineData("-tls1_3")]
    [InlineData("-tls1_2")]
    public async Task Only_elliptic_curve_key_exchange_is_accepted(string version)
    {
        // Applied process-wide before the first test by TlsKeyExchangeFixture, as a sidecar applies it at start.
        Assert.Null(TlsKeyExchange.Restrict());
        await using var server = StartServer();

        // A finite-field group costs the server ~50x an X25519 exchange: a cheap denial of service.
        foreach (var group in (string[])["ffdhe2048", "ffdhe8192"])
        {
            await using var dh = pki.Connect(server.Port, "good", version, "-groups", group);
            Assert.False(await dh.EchoAsync($"must-not-echo-{group}", timeoutMs: 3_000), $"{group} was accepted");
            Assert.IsAssignableFrom<AuthenticationException>(server.NextHandshake());
        }

        foreach (var group in (string[])["X25519", "P-256", "P-384"])
        {
            // In TLS 1.2 the client's groups also name the curves it accepts for the server's ECDSA key (P-256).
            await using var ec = pki.Connect(server.Port, "good", version, "-groups", version == "-tls1_2" && group != "P-256" ? group + ":P-256" : group);
            Assert.True(await ec.EchoAsync($"hello-{group}"), $"{group}: {ec.Stderr}");
            Assert.Null(server.NextHandshake());
        }

        Assert.DoesNotContain(_verdicts, v => !v.IsValid);
    }
}
