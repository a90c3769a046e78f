using System.Security.Cryptography.X509Certificates;

[assembly: AssemblyFixture(typeof(MeshProxy.Identity.Tests.OpenSslPki))]

namespace MeshProxy.Identity.Tests;

/// <summary>
/// Certificates made by the real openssl CLI, once per test run: two roots, an intermediate, and leaves that
/// are each wrong in exactly one way. OpenSSL 3.0's x509 lacks -not_before, so leaves go through 'openssl ca',
/// whose -startdate/-enddate make expired and not-yet-valid ones.
/// </summary>
public sealed class OpenSslPki : IDisposable
{
    public const string TrustDomain = "example.org";
    public const string Web = "spiffe://example.org/ns/default/sa/web";
    public const string Api = "spiffe://example.org/ns/default/sa/api";
    public const string Server = "spiffe://example.org/ns/default/sa/server";

    private const string GoodExtensions = OpenSslCa.GoodLeafExtensions;

    private readonly TempDirectory _dir = new();
    private readonly OpenSslCa _ca;

    public OpenSslPki()
    {
        _ca = new OpenSslCa(_dir.Path, "URI:" + Web);
        _ca.MakeRoot("rootA", "/O=example.org/CN=Test root A");
        _ca.MakeRoot("rootB", "/O=example.org/CN=Test root B");
        _ca.Issue("interA", "rootA", """
            basicConstraints = critical,CA:TRUE,pathlen:0
            keyUsage = critical,keyCertSign,cRLSign
            subjectKeyIdentifier = hash
            authorityKeyIdentifier = keyid
            """);
        File.WriteAllText(Path("interA-chain.pem"), File.ReadAllText(Path("interA.pem")) + File.ReadAllText(Path("rootA.pem")));

        _ca.Issue("good", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}");
        _ca.Issue("api", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Api}");
        _ca.Issue("server", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Server}");
        _ca.Issue("viaInter", "interA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}");
        _ca.Issue("expired", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", "20200101000000Z", "20200201000000Z");
        _ca.Issue("notYetValid", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", "20900101000000Z", "20900201000000Z");
        _ca.Issue("otherCa", "rootB", $"{GoodExtensions}\nsubjectAltName = URI:{Web}");
        _ca.Issue("otherTrustDomain", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:spiffe://other.org/ns/default/sa/web");
        _ca.Issue("noUriSan", "rootA", $"{GoodExtensions}\nsubjectAltName = DNS:web.default.svc");
        _ca.Issue("twoUriSans", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web},URI:{Api}");
        _ca.Issue("notSpiffe", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:https://web.example.org/");
        _ca.Issue("keyCertSignOnly", "rootA", $"""
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,keyCertSign
            extendedKeyUsage = serverAuth,clientAuth
            subjectAltName = URI:{Web}
            """);
        _ca.Issue("serverAuthOnly", "rootA", $"""
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = URI:{Web}
            """);
        _ca.Issue("caAsLeaf", "rootA", $"""
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,digitalSignature,keyCertSign
            extendedKeyUsage = serverAuth,clientAuth
            subjectAltName = URI:{Web}
            """);

        // Cryptography too weak for a mesh identity, otherwise perfect leaves.
        _ca.Issue("rsa1024", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", keyAlgorithm: ["RSA", "rsa_keygen_bits:1024"]);
        _ca.Issue("rsa2048", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", keyAlgorithm: ["RSA", "rsa_keygen_bits:2048"]);
        _ca.Issue("p224", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", keyAlgorithm: ["EC", "ec_paramgen_curve:P-224"]);
        _ca.Issue("sha1Signed", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", digest: "sha1");

        _ca.SelfSigned("selfSigned", "/O=example.org/CN=selfSigned");
    }

    public string Path(string name) => _dir.File(name);

    public string CertPath(string name) => Path(name + ".pem");

    public string KeyPath(string name) => Path(name + ".key");

    public X509Certificate2 Load(string name) => X509Certificate2.CreateFromPemFile(CertPath(name), KeyPath(name));

    public TrustBundle Bundle(params string[] roots) => TrustBundle.FromPem(string.Concat(roots.Select(r => File.ReadAllText(CertPath(r)))));

    /// <summary>s_client to 127.0.0.1:<paramref name="port"/> trusting rootA, presenting <paramref name="clientCert"/> (a name here) unless null.</summary>
    public SClient Connect(int port, string? clientCert, params string[] extra) =>
        SClient.Start(port, CertPath("rootA"), clientCert is null ? null : CertPath(clientCert), clientCert is null ? null : KeyPath(clientCert), ["-quiet", .. extra]);

    public void Dispose() => _dir.Dispose();
}
