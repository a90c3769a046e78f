using System.Diagnostics;

namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>
/// Certificates made by the real openssl CLI, once per test run: two mesh roots (A and B, for a CA
/// rotation), SVIDs for the test workloads, and client certificates that are each wrong in one way.
/// Trust domain cluster.local (MeshConfig's default), namespace test (MeshYaml's).
/// </summary>
internal sealed class MeshPki
{
    public const string TrustDomain = "cluster.local";

    private const string GoodExtensions = """
        basicConstraints = critical,CA:FALSE
        keyUsage = critical,digitalSignature
        extendedKeyUsage = serverAuth,clientAuth
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        """;

    private static readonly Lazy<MeshPki> Instance = new(() => new MeshPki(), LazyThreadSafetyMode.ExecutionAndPublication);
    private readonly string _dir = Directory.CreateTempSubdirectory("meshproxy-mtls-pki-").FullName;
    private readonly Lock _lock = new();

    private MeshPki()
    {
        File.WriteAllText(Path("req.cnf"), $"""
            [ req ]
            distinguished_name = dn
            [ dn ]
            [ v3_ca ]
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,keyCertSign,cRLSign
            subjectKeyIdentifier = hash
            [ self_signed_leaf ]
            {GoodExtensions.Replace("authorityKeyIdentifier = keyid", string.Empty)}
            subjectAltName = URI:{Id("store")}
            """);
        MakeRoot("rootA", "/O=cluster.local/CN=Mesh root A");
        MakeRoot("rootB", "/O=cluster.local/CN=Mesh root B");
        File.WriteAllText(Path("bundleAB.pem"), File.ReadAllText(Cert("rootA")) + File.ReadAllText(Cert("rootB")));

        Svid("store", "rootA", "store");
        Svid("billing", "rootA", "billing");
        Svid("storeB", "rootB", "store");
        Svid("billingB", "rootB", "billing");
        Svid("impostor", "rootA", "impostor");
        Issue("expired", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Id("store")}", "20200101000000Z", "20200201000000Z");
        Issue("notYetValid", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Id("store")}", "20900101000000Z", "20900201000000Z");
        Issue("otherCa", "rootB", $"{GoodExtensions}\nsubjectAltName = URI:{Id("store")}");
        Issue("otherTrustDomain", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:spiffe://other.org/ns/test/sa/store");
        Issue("noUriSan", "rootA", $"{GoodExtensions}\nsubjectAltName = DNS:store.test.svc");
        Issue("twoUriSans", "rootA", $"{GoodExtensions}\nsubjectAltName = URI:{Id("store")},URI:{Id("billing")}");
        Issue("wrongKeyUsage", "rootA", $"""
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,keyCertSign
            extendedKeyUsage = serverAuth,clientAuth
            subjectAltName = URI:{Id("store")}
            """);
        NewKey("selfSigned");
        OpenSsl("req", "-x509", "-new", "-key", Key("selfSigned"), "-subj", "/O=cluster.local/CN=selfSigned", "-days", "30",
            "-config", Path("req.cnf"), "-extensions", "self_signed_leaf", "-out", Cert("selfSigned"));
    }

    public static MeshPki Shared => Instance.Value;

    public static string Id(string serviceAccount) => $"spiffe://{TrustDomain}/ns/test/sa/{serviceAccount}";

    public string Path(string name) => System.IO.Path.Combine(_dir, name);

    public string Cert(string name) => Path(name + ".pem");

    public string Key(string name) => Path(name + ".key");

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

    public static string OpenSsl(params string[] args)
    {
        var info = new ProcessStartInfo("openssl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(30_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"openssl {string.Join(' ', args)} did not finish in 30 s");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"openssl {string.Join(' ', args)} failed ({process.ExitCode}): {stderr.Result}");
        }

        return stdout.Result;
    }

    private static void AtomicCopy(string from, string to)
    {
        var temp = to + ".tmp";
        File.Copy(from, temp, overwrite: true);
        File.Move(temp, to, overwrite: true);
    }

    private void Svid(string name, string issuer, string serviceAccount) =>
        Issue(name, issuer, $"{GoodExtensions}\nsubjectAltName = critical,URI:{Id(serviceAccount)}");

    private void MakeRoot(string name, string subject)
    {
        NewKey(name);
        OpenSsl("req", "-x509", "-new", "-key", Key(name), "-subj", subject, "-days", "3650",
            "-config", Path("req.cnf"), "-extensions", "v3_ca", "-out", Cert(name));
        var caDir = Path(name + "-db");
        Directory.CreateDirectory(System.IO.Path.Combine(caDir, "new"));
        File.WriteAllText(System.IO.Path.Combine(caDir, "index.txt"), string.Empty);
        File.WriteAllText(System.IO.Path.Combine(caDir, "serial"), name == "rootA" ? "1000\n" : "5000\n");
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

    private void Issue(string name, string issuer, string extensions, string? startDate = null, string? endDate = null)
    {
        // 'openssl ca' keeps a serial file and an index: one issuance at a time.
        lock (_lock)
        {
            NewKey(name);
            OpenSsl("req", "-new", "-key", Key(name), "-subj", $"/O=mesh-test/CN={name}", "-config", Path("req.cnf"), "-out", Path(name + ".csr"));
            File.WriteAllText(Path(name + ".ext"), "[ ext ]\n" + extensions + "\n");
            List<string> args = ["ca", "-batch", "-config", Path(issuer + "-ca.cnf"), "-cert", Cert(issuer), "-keyfile", Key(issuer),
                "-in", Path(name + ".csr"), "-out", Cert(name), "-extfile", Path(name + ".ext"), "-extensions", "ext", "-notext"];
            args.AddRange(startDate is null ? ["-days", "30"] : ["-startdate", startDate, "-enddate", endDate!]);
            OpenSsl([.. args]);
        }
    }

    private void NewKey(string name) =>
        OpenSsl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", Key(name));
}

/// <summary>The three files of a Sidecar's spec.tls.</summary>
internal sealed record TlsFiles(string Chain, string Key, string Bundle);
