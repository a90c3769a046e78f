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

    private const string GoodExtensions = """
        basicConstraints = critical,CA:FALSE
        keyUsage = critical,digitalSignature
        extendedKeyUsage = serverAuth,clientAuth
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        """;

    private readonly TempDirectory _dir = new();

    public OpenSslPki()
    {
        File.WriteAllText(_dir.File("req.cnf"), $"""
            [ req ]
            distinguished_name = dn
            [ dn ]
            [ v3_ca ]
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,keyCertSign,cRLSign
            subjectKeyIdentifier = hash
            [ self_signed_leaf ]
            {GoodExtensions.Replace("authorityKeyIdentifier = keyid", string.Empty)}
            subjectAltName = URI:{Web}
            """);

        MakeRoot("rootA", "/O=example.org/CN=Test root A");
        MakeRoot("rootB", "/O=example.org/CN=Test root B");
        Issue("interA", "rootA", """
            basicConstraints = critical,CA:TRUE,pathlen:0
            keyUsage = critical,keyCertSign,cRLSign
            subjectKeyIdentifier = hash
            authorityKeyIdentifier = keyid
            """);
        File.WriteAllText(Path("interA-chain.pem"), File.ReadAllText(Path("interA.pem")) + File.ReadAllText(Path("rootA.pem")));

        Issue("good", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}");
        Issue("api", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Api}");
        Issue("server", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Server}");
        Issue("viaInter", "interA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}");
        Issue("expired", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", "20200101000000Z", "20200201000000Z");
        Issue("notYetValid", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", "20900101000000Z", "20900201000000Z");
        Issue("otherCa", "rootB", $"{GoodExtensions}\nsubjectAltName = URI:{Web}");
        Issue("otherTrustDomain", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:spiffe://other.org/ns/default/sa/web");
        Issue("noUriSan", "rootA", $"{GoodExtensions}\nsubjectAltName = DNS:web.default.svc");
        Issue("twoUriSans", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web},URI:{Api}");
        Issue("notSpiffe", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:https://web.example.org/");
        Issue("keyCertSignOnly", "rootA", $"""
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,keyCertSign
            extendedKeyUsage = serverAuth,clientAuth
            subjectAltName = URI:{Web}
            """);
        Issue("serverAuthOnly", "rootA", $"""
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = URI:{Web}
            """);
        Issue("caAsLeaf", "rootA", $"""
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,digitalSignature,keyCertSign
            extendedKeyUsage = serverAuth,clientAuth
            subjectAltName = URI:{Web}
            """);

        // Cryptography too weak for a mesh identity, otherwise perfect leaves.
        Issue("rsa1024", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", keyAlgorithm: ["RSA", "rsa_keygen_bits:1024"]);
        Issue("rsa2048", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", keyAlgorithm: ["RSA", "rsa_keygen_bits:2048"]);
        Issue("p224", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", keyAlgorithm: ["EC", "ec_paramgen_curve:P-224"]);
        Issue("sha1Signed", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Web}", digest: "sha1");

        NewKey("selfSigned");
        Tool.Run("openssl", "req", "-x509", "-new", "-key", Path("selfSigned.key"), "-subj", "/O=example.org/CN=selfSigned", "-days", "30",
            "-config", Path("req.cnf"), "-extensions", "self_signed_leaf", "-out", Path("selfSigned.pem"));
    }

    public string Path(string name) => _dir.File(name);

    public string CertPath(string name) => Path(name + ".pem");

    public string KeyPath(string name) => Path(name + ".key");

    public X509Certificate2 Load(string name) => X509Certificate2.CreateFromPemFile(CertPath(name), KeyPath(name));

    public TrustBundle Bundle(params string[] roots) => TrustBundle.FromPem(string.Concat(roots.Select(r => File.ReadAllText(CertPath(r)))));

    private void MakeRoot(string name, string subject)
    {
        NewKey(name);
        Tool.Run("openssl", "req", "-x509", "-new", "-key", Path(name + ".key"), "-subj", subject, "-days", "3650",
            "-config", Path("req.cnf"), "-extensions", "v3_ca", "-out", Path(name + ".pem"));
        WriteCaConfig(name);
    }

    private void Issue(string name, string issuer, string extensions, string? startDate = null, string? endDate = null, string[]? keyAlgorithm = null, string digest = "sha256")
    {
        NewKey(name, keyAlgorithm ?? ["EC", "ec_paramgen_curve:P-256"]);
        Tool.Run("openssl", "req", "-new", "-key", Path(name + ".key"), "-subj", $"/O=mesh-test/CN={name}", "-config", Path("req.cnf"), "-out", Path(name + ".csr"));
        File.WriteAllText(Path(name + ".ext"), "[ ext ]\n" + extensions + "\n");
        var config = Path(issuer + "-ca.cnf");
        if (!File.Exists(config))
        {
            WriteCaConfig(issuer);
        }

        List<string> args = ["ca", "-batch", "-config", config, "-cert", CertPath(issuer), "-keyfile", KeyPath(issuer), "-in", Path(name + ".csr"),
            "-out", CertPath(name), "-extfile", Path(name + ".ext"), "-extensions", "ext", "-notext", "-md", digest];
        if (startDate is not null)
        {
            args.AddRange(["-startdate", startDate, "-enddate", endDate!]);
        }
        else
        {
            args.AddRange(["-days", "30"]);
        }

        Tool.Run("openssl", [.. args]);
    }

    private void WriteCaConfig(string name)
    {
        var caDir = Path(name + "-db");
        Directory.CreateDirectory(System.IO.Path.Combine(caDir, "new"));
        File.WriteAllText(System.IO.Path.Combine(caDir, "index.txt"), string.Empty);
        File.WriteAllText(System.IO.Path.Combine(caDir, "serial"), "1000\n");
        File.WriteAllText(Path(name + "-ca.cnf"), $"""
            [ ca ]
            default_ca = this_ca
            [ this_ca ]
            dir = {caDir}
            database = $dir/index.txt
            new_certs_dir = $dir/new
            serial = $dir/serial
            default_md = sha256
            policy = any
            unique_subject = no
            copy_extensions = none
            email_in_dn = no
            [ any ]
            organizationName = optional
            commonName = optional
            """);
    }

    private void NewKey(string name) => NewKey(name, ["EC", "ec_paramgen_curve:P-256"]);

    private void NewKey(string name, string[] algorithm) =>
        Tool.Run("openssl", "genpkey", "-algorithm", algorithm[0], "-pkeyopt", algorithm[1], "-out", KeyPath(name));

    public void Dispose() => _dir.Dispose();
}
