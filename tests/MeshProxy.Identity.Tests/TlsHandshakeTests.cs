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
        };

        foreach (var (cert, expected) in cases)
        {
            await using var bad = pki.Connect(server.Port, cert, version);
            Assert.False(await bad.EchoAsync($"must-not-echo-{cert}", timeoutMs: 3_000), $"{cert}: the server echoed");
            Assert.NotNull(await bad.ExitCodeAsync());
            Assert.IsAssignableFrom<AuthenticationException>(server.NextHandshake());
            Assert.True(_verdicts.TryDequeue(out var refused), $"{cert}: the verifier was not asked");
            Assert.Equal(expected, refused.Failure);
        }

        Assert.True(await held.EchoAsync("hello-2"), $"the held connection broke: {held.Stderr}");
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
}
