namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>
/// Certificates made by the real openssl CLI, once per test run: two mesh roots (A and B, for a CA
/// rotation), SVIDs for the test workloads, and client certificates that are each wrong in one way.
/// Trust domain cluster.local (MeshConfig's default), namespace test (MeshYaml's).
/// </summary>
internal sealed class MeshPki
{
    public const string TrustDomain = "cluster.local";

    private const string GoodExtensions = OpenSslCa.GoodLeafExtensions;

    private static readonly Lazy<MeshPki> Instance = new(() => new MeshPki(), LazyThreadSafetyMode.ExecutionAndPublication);
    private readonly OpenSslCa _ca = new(Directory.CreateTempSubdirectory("meshproxy-mtls-pki-").FullName, "URI:" + Id("store"));

    private MeshPki()
    {
        _ca.MakeRoot("rootA", "/O=cluster.local/CN=Mesh root A");
        _ca.MakeRoot("rootB", "/O=cluster.local/CN=Mesh root B");
        File.WriteAllText(Path("bundleAB.pem"), File.ReadAllText(Cert("rootA")) + File.ReadAllText(Cert("rootB")));

        Svid("store", "rootA", "store");
        Svid("billing", "rootA", "billing");
        Svid("storeB", "rootB", "store");
        Svid("billingB", "rootB", "billing");
        Svid("impostor", "rootA", "impostor");
        _ca.Issue("expired", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Id("store")}", "20200101000000Z", "20200201000000Z");
        _ca.Issue("notYetValid", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Id("store")}", "20900101000000Z", "20900201000000Z");
        _ca.Issue("otherCa", "rootB", $"{GoodExtensions}\nsubjectAltName = URI:{Id("store")}");
        _ca.Issue("otherTrustDomain", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:spiffe://other.org/ns/test/sa/store");
        _ca.Issue("noUriSan", "rootA", $"{GoodExtensions}\nsubjectAltName = DNS:store.test.svc");
        _ca.Issue("twoUriSans", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Id("store")},URI:{Id("billing")}");
        _ca.Issue("wrongKeyUsage", "rootA", $"""
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,keyCertSign
            extendedKeyUsage = serverAuth,clientAuth
            subjectAltName = URI:{Id("store")}
            """);
        _ca.SelfSigned("selfSigned", "/O=cluster.local/CN=selfSigned");
    }

    public static MeshPki Shared => Instance.Value;

    public static string Id(string serviceAccount) => $"spiffe://{TrustDomain}/ns/test/sa/{serviceAccount}";

    public string Path(string name) => _ca.Path(name);

    public string Cert(string name) => _ca.Cert(name);

    public string Key(string name) => _ca.Key(name);

    /// <summary>A new SVID for <paramref name="serviceAccount"/> under <paramref name="issuer"/>, named uniquely (rotation tests).</summary>
    public string FreshSvid(string issuer, string serviceAccount)
    {
        var name = $"{serviceAccount}-{Guid.NewGuid():N}";
        Svid(name, issuer, serviceAccount);
        return name;
    }

    /// <summary>Copies an SVID and a bundle into <paramref name="directory"/> as the files spec.tls names; returns them.</summary>
    public TlsFiles WriteFiles(string directory, string svid, string bundle = "rootA")
    {
        Directory.CreateDirectory(directory);
        var files = new TlsFiles(
            System.IO.Path.Combine(directory, "cert-chain.pem"),
            System.IO.Path.Combine(directory, "key.pem"),
            System.IO.Path.Combine(directory, "root-cert.pem"));
        Replace(files, svid, bundle);
        return files;
    }

    /// <summary>Rewrites the files in place, the way an external issuer rotates them (each file atomically, one after another).</summary>
    public void Replace(TlsFiles files, string svid, string bundle = "rootA")
    {
        AtomicCopy(Cert(svid), files.Chain);
        AtomicCopy(Key(svid), files.Key);
        AtomicCopy(bundle.StartsWith("bundle", StringComparison.Ordinal) ? Path(bundle + ".pem") : Cert(bundle), files.Bundle);
    }

    public static string OpenSsl(params string[] args) => OpenSslCa.OpenSsl(args);

    /// <summary>s_client to 127.0.0.1:<paramref name="port"/> trusting rootA, presenting <paramref name="clientCert"/> (a name here) unless null.</summary>
    public static SClient Connect(int port, string? clientCert, params string[] extra) =>
        SClient.Start(port, Shared.Cert("rootA"), clientCert is null ? null : Shared.Cert(clientCert), clientCert is null ? null : Shared.Key(clientCert), ["-ign_eof", .. extra]);

    private static void AtomicCopy(string from, string to)
    {
        var temp = to + ".tmp";
        File.Copy(from, temp, overwrite: true);
        File.Move(temp, to, overwrite: true);
    }

    private void Svid(string name, string issuer, string serviceAccount) =>
        _ca.Issue(name, issuer, $"{GoodExtensions}\nsubjectAltName = critical,URI:{Id(serviceAccount)}");
}

/// <summary>The three files of a Sidecar's spec.tls.</summary>
internal sealed record TlsFiles(string Chain, string Key, string Bundle);
