using System.Security.Cryptography.X509Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.ControlPlane.Tests.Certificates;

/// <summary>Certificates/CreateCertificate over real HTTP/2, called by grpc-js with CSRs made by openssl, answers checked by openssl.</summary>
public sealed class CertificateServiceWithGrpcJsTests
{
    private const int Unauthenticated = 16;
    private const int PermissionDenied = 7;
    private const int InvalidArgument = 3;

    [Fact]
    public async Task Valid_token_and_csr_get_a_chain_openssl_verifies_against_the_returned_bundle()
    {
        await using var kit = await CaTestKit.StartAsync();
        var token = kit.CreateToken("shop", "web");
        var csr = await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web"));

        var answer = await kit.RequestAsync(csr, token);

        Assert.True(answer.Ok, answer.Details);
        Assert.Single(answer.Chain); // self-managed root: the leaf alone
        Assert.Single(answer.Bundle);
        var leaf = kit.Write("leaf.pem", answer.Chain[0]);
        var bundle = kit.Write("bundle.pem", string.Concat(answer.Bundle));
        Assert.Contains($"{leaf}: OK", await CaTestKit.RunAsync("openssl", "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", bundle, leaf));
        Assert.Contains($"{leaf}: OK", await CaTestKit.RunAsync("openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", bundle, leaf));

        var text = await CaTestKit.RunAsync("openssl", "x509", "-in", leaf, "-noout", "-ext", "subjectAltName,keyUsage,extendedKeyUsage,basicConstraints");
        Assert.Contains("URI:" + CaTestKit.SpiffeId("shop", "web"), text);
        Assert.Contains("Digital Signature", text);
        Assert.Contains("TLS Web Server Authentication, TLS Web Client Authentication", text);
        Assert.Contains("CA:FALSE", text);

        // The mesh default (MeshConfig certificateTtl 24h), counted from now, with the CA's one-minute backdating.
        using var cert = X509Certificate2.CreateFromPem(answer.Chain[0]);
        Assert.InRange(cert.NotAfter.ToUniversalTime() - DateTime.UtcNow, TimeSpan.FromHours(24) - TimeSpan.FromMinutes(1), TimeSpan.FromHours(24));
        Assert.Contains("meshproxy_controlplane_certificates_issued_total 1", await kit.ControlPlane.MetricsAsync());
    }

    [Fact]
    public async Task No_token_and_a_bad_token_are_unauthenticated()
    {
        await using var kit = await CaTestKit.StartAsync();
        kit.CreateToken("shop", "web");
        var csr = await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web"));

        var none = await kit.RequestAsync(csr, token: null);
        Assert.Equal(Unauthenticated, none.Code);
        Assert.Contains("no bearer token", none.Details);

        var bad = await kit.RequestAsync(csr, "not-a-token");
        Assert.Equal(Unauthenticated, bad.Code);
        Assert.Contains("not valid", bad.Details);

        var wrongScheme = await kit.RequestAsync(csr, "Basic dXNlcjpwYXNz");
        Assert.Equal(Unauthenticated, wrongScheme.Code);

        var metrics = await kit.ControlPlane.MetricsAsync();
        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"missing_token\"} 2", metrics);
        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"invalid_token\"} 1", metrics);
    }

    [Fact]
    public async Task Csr_for_another_service_account_is_permission_denied_naming_both_identities()
    {
        await using var kit = await CaTestKit.StartAsync();
        var token = kit.CreateToken("shop", "web");
        var csr = await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "payments"));

        var answer = await kit.RequestAsync(csr, token);

        Assert.Equal(PermissionDenied, answer.Code);
        Assert.Contains(CaTestKit.SpiffeId("shop", "payments"), answer.Details);
        Assert.Contains(CaTestKit.SpiffeId("shop", "web"), answer.Details);
        Assert.StartsWith("identity_mismatch:", answer.Details);
        Assert.Contains("meshproxy_controlplane_certificate_refusals_total{reason=\"identity_mismatch\"} 1", await kit.ControlPlane.MetricsAsync());
    }

    [Theory]
    [InlineData("URI:spiffe://test.mesh/ns/shop/sa/web,URI:spiffe://test.mesh/ns/shop/sa/admin", "multiple_uri_sans")]
    [InlineData("URI:spiffe://test.mesh/ns/shop/sa/web,DNS:web.shop.svc", "other_subject_alt_names")]
    [InlineData("DNS:web.shop.svc", "other_subject_alt_names")]
    [InlineData("URI:spiffe://other.mesh/ns/shop/sa/web", "identity_mismatch")]
    public async Task Csr_asking_for_more_than_the_one_entitled_spiffe_id_is_permission_denied(string subjectAltName, string reason)
    {
        await using var kit = await CaTestKit.StartAsync();
        var token = kit.CreateToken("shop", "web");
        var csr = await kit.OpensslCsrAsync(subjectAltName);

        var answer = await kit.RequestAsync(csr, token);

        Assert.Equal(PermissionDenied, answer.Code);
        Assert.StartsWith(reason + ":", answer.Details);
    }

    [Fact]
    public async Task Unreadable_csr_and_negative_validity_are_invalid_argument()
    {
        await using var kit = await CaTestKit.StartAsync();
        var token = kit.CreateToken("shop", "web");

        var garbage = await kit.RequestAsync(kit.Write("garbage.pem", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), token);
        Assert.Equal(InvalidArgument, garbage.Code);
        Assert.StartsWith("malformed_csr:", garbage.Details);

        var csr = await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web"));
        var negative = await kit.RequestAsync(csr, token, validitySeconds: -5);
        Assert.Equal(InvalidArgument, negative.Code);
        Assert.Contains("validity_seconds is -5", negative.Details);
    }

    [Fact]
    public async Task Validity_above_the_maximum_is_clamped_to_maxCertificateTtl()
    {
        // The control plane's clock stands at a whole second: lifetimes are exact, not "about now plus the TTL".
        var now = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        await using var kit = await CaTestKit.StartAsync(ttl: "1h", maxTtl: "2h", time: new FakeTimeProvider(now));
        var token = kit.CreateToken("shop", "web");
        var csr = await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web"));

        var clamped = await kit.RequestAsync(csr, token, validitySeconds: (long)TimeSpan.FromDays(30).TotalSeconds);
        var shorter = await kit.RequestAsync(csr, token, validitySeconds: 600);

        Assert.True(clamped.Ok, clamped.Details);
        using var cert = X509Certificate2.CreateFromPem(clamped.Chain[0]);
        Assert.Equal(now + TimeSpan.FromHours(2), new DateTimeOffset(cert.NotAfter.ToUniversalTime()));
        using var shortCert = X509Certificate2.CreateFromPem(shorter.Chain[0]);
        Assert.Equal(now + TimeSpan.FromMinutes(10), new DateTimeOffset(shortCert.NotAfter.ToUniversalTime()));
    }

    [Fact]
    public async Task Token_created_while_running_works_at_once()
    {
        await using var kit = await CaTestKit.StartAsync();
        var csr = await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "late"));
        Assert.Equal(Unauthenticated, (await kit.RequestAsync(csr, "x")).Code);

        var token = kit.CreateToken("shop", "late");

        Assert.True((await kit.RequestAsync(csr, token)).Ok);
    }

    [Fact]
    public async Task Operator_intermediate_signs_and_the_chain_carries_it_and_the_additional_root_is_published()
    {
        var dir = RepoPaths.NewTempDirectory();
        string F(string n) => Path.Combine(dir, n);
        // An operator PKI made by openssl: root -> intermediate (the CA signs with it); and the next root, for rotation.
        await CaTestKit.RunAsync("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", F("root-key.pem"), "-out", F("root.pem"),
            "-days", "3650", "-subj", "/O=Operator/CN=Operator Root", "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        await CaTestKit.RunAsync("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", F("int-key.pem"), "-out", F("int.csr"), "-subj", "/O=Operator/CN=Mesh Intermediate");
        File.WriteAllText(F("int.ext"), "basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n");
        await CaTestKit.RunAsync("openssl", "x509", "-req", "-in", F("int.csr"), "-CA", F("root.pem"), "-CAkey", F("root-key.pem"), "-CAcreateserial", "-days", "365", "-extfile", F("int.ext"), "-out", F("int.pem"));
        await CaTestKit.RunAsync("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", F("next-key.pem"), "-out", F("next-root.pem"),
            "-days", "3650", "-subj", "/O=Operator/CN=Next Root", "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        File.WriteAllText(F("chain.pem"), File.ReadAllText(F("int.pem")) + File.ReadAllText(F("root.pem")));

        await using var kit = await CaTestKit.StartAsync(o => o with
        {
            CaDirectory = null,
            CaCertChainFile = F("chain.pem"),
            CaKeyFile = F("int-key.pem"),
            CaRootFile = F("root.pem"),
            AdditionalRootsFile = F("next-root.pem"),
        });
        var token = kit.CreateToken("shop", "web");
        var answer = await kit.RequestAsync(await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web")), token);

        Assert.True(answer.Ok, answer.Details);
        Assert.Equal(2, answer.Chain.Length);
        Assert.Equal(2, answer.Bundle.Length);
        var leaf = kit.Write("leaf.pem", answer.Chain[0]);
        var untrusted = kit.Write("untrusted.pem", answer.Chain[1]);
        var bundle = kit.Write("bundle.pem", string.Concat(answer.Bundle));
        Assert.Contains($"{leaf}: OK", await CaTestKit.RunAsync("openssl", "verify", "-CAfile", bundle, "-untrusted", untrusted, leaf));
        // Against the next root alone the leaf does not verify: the bundle really holds two distinct roots.
        var nextOnly = kit.Write("next.pem", File.ReadAllText(F("next-root.pem")));
        await Assert.ThrowsAsync<InvalidOperationException>(() => CaTestKit.RunAsync("openssl", "verify", "-CAfile", nextOnly, "-untrusted", untrusted, leaf));
        Assert.Contains("meshproxy_controlplane_trust_bundle_roots 2", await kit.ControlPlane.MetricsAsync());
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public async Task Grpc_over_tls_presents_a_certificate_from_the_ca_and_serves_the_same_api()
    {
        await using var kit = await CaTestKit.StartAsync(tls: true);
        var token = kit.CreateToken("shop", "web");
        var csr = await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web"));
        var root = Path.Combine(kit.Work, "ca", "root-cert.pem");
        var port = kit.ControlPlane.Host.GrpcTlsEndPoint!.Port;

        var answer = await kit.RequestAsync(csr, token, tlsRootFile: root, port: port);

        Assert.True(answer.Ok, answer.Details);
        // What the server presents, seen by openssl: an SVID of the control plane, TLS 1.3, ALPN h2.
        var shown = await CaTestKit.RunAsync("sh", "-c", $"openssl s_client -connect 127.0.0.1:{port} -alpn h2 -CAfile {root} </dev/null 2>&1 | openssl x509 -noout -ext subjectAltName; openssl s_client -connect 127.0.0.1:{port} -alpn h2 -CAfile {root} </dev/null 2>&1 | grep -E 'ALPN|Verify return|Protocol'");
        Assert.Contains("URI:spiffe://test.mesh/ns/meshproxy-system/sa/meshproxy-controlplane", shown);
        Assert.Contains("ALPN protocol: h2", shown);
        Assert.Contains("Verify return code: 0 (ok)", shown);
    }
}

/// <summary><c>meshproxy token create</c>, the real binary, feeding the real CA.</summary>
public sealed class TokenCommandTests
{
    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task Token_create_prints_the_token_once_and_the_ca_accepts_it()
    {
        await using var kit = await CaTestKit.StartAsync();
        var cli = Path.Combine(AppContext.BaseDirectory, "meshproxy");

        var output = await CaTestKit.RunAsync(cli, "token", "create", "--namespace", "shop", "--service-account", "web", "--store", kit.TokenStore);

        var token = output.Split('\n')[0].Trim();
        Assert.Matches("^[A-Za-z0-9_-]{43}$", token);
        Assert.DoesNotContain(token, await File.ReadAllTextAsync(kit.TokenStore, TestContext.Current.CancellationToken));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(kit.TokenStore));
        var answer = await kit.RequestAsync(await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web")), token);
        Assert.True(answer.Ok, answer.Details);

        await Assert.ThrowsAsync<InvalidOperationException>(() => CaTestKit.RunAsync(cli, "token", "create", "--namespace", "bad/ns", "--service-account", "web", "--store", kit.TokenStore));
        await CaTestKit.RunAsync(cli, "token", "revoke", "--namespace", "shop", "--service-account", "web", "--store", kit.TokenStore);
        var revoked = await kit.RequestAsync(await kit.OpensslCsrAsync("URI:" + CaTestKit.SpiffeId("shop", "web")), token);
        Assert.Equal(16, revoked.Code);
    }
}
