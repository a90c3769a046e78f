namespace MeshProxy.Testing;

/// <summary>
/// Certificates made by the real openssl CLI in one directory: roots, intermediates and leaves with any
/// extensions, including ones that are wrong on purpose. Leaves go through 'openssl ca' because OpenSSL
/// 3.0's x509 lacks -not_before: its -startdate/-enddate make expired and not-yet-valid ones. Each test
/// project's PKI (its catalogue of names) is built with this.
/// </summary>
public sealed class OpenSslCa
{
    /// <summary>The extensions of a well-formed SVID, without its subjectAltName.</summary>
    public const string GoodLeafExtensions = """
        basicConstraints = critical,CA:FALSE
        keyUsage = critical,digitalSignature
        extendedKeyUsage = serverAuth,clientAuth
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid
        """;

    private readonly Lock _lock = new();
    private int _nextSerial = 0x1000;

    /// <param name="directory">Where every file goes (created if missing).</param>
    /// <param name="selfSignedSan">The subjectAltName line of <see cref="SelfSigned"/> leaves, e.g. "URI:spiffe://...".</param>
    public OpenSslCa(string directory, string selfSignedSan)
    {
        Directory = directory;
        System.IO.Directory.CreateDirectory(directory);
        File.WriteAllText(Path("req.cnf"), $"""
            [ req ]
            distinguished_name = dn
            [ dn ]
            [ v3_ca ]
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,keyCertSign,cRLSign
            subjectKeyIdentifier = hash
            [ self_signed_leaf ]
            {GoodLeafExtensions.Replace("authorityKeyIdentifier = keyid", string.Empty, StringComparison.Ordinal)}
            subjectAltName = {selfSignedSan}
            """);
    }

    public string Directory { get; }

    public string Path(string name) => System.IO.Path.Combine(Directory, name);

    /// <summary>The PEM certificate called <paramref name="name"/>.</summary>
    public string Cert(string name) => Path(name + ".pem");

    /// <summary>The PEM private key called <paramref name="name"/>.</summary>
    public string Key(string name) => Path(name + ".key");

    /// <summary>`openssl` with <paramref name="args"/>; its stdout, or an exception with its stderr.</summary>
    public static string OpenSsl(params string[] args) => Run.Checked("openssl", args);

    /// <summary>A self-signed CA certificate, valid ten years.</summary>
    public void MakeRoot(string name, string subject)
    {
        NewKey(name);
        OpenSsl("req", "-x509", "-new", "-key", Key(name), "-subj", subject, "-days", "3650",
            "-config", Path("req.cnf"), "-extensions", "v3_ca", "-out", Cert(name));
        WriteCaConfig(name);
    }

    /// <summary>
    /// A certificate signed by <paramref name="issuer"/> with exactly <paramref name="extensions"/>, valid 30 days unless dates are
    /// given (yyyyMMddHHmmssZ); a P-256 key signed with SHA-256 unless <paramref name="keyAlgorithm"/> (genpkey's algorithm and one
    /// -pkeyopt) or <paramref name="digest"/> say otherwise.
    /// </summary>
    public void Issue(string name, string issuer, string extensions, string? startDate = null, string? endDate = null,
        string[]? keyAlgorithm = null, string digest = "sha256")
    {
        // 'openssl ca' keeps a serial file and an index: one issuance at a time.
        lock (_lock)
        {
            NewKey(name, keyAlgorithm ?? P256);
            OpenSsl("req", "-new", "-key", Key(name), "-subj", $"/O=mesh-test/CN={name}", "-config", Path("req.cnf"), "-out", Path(name + ".csr"));
            File.WriteAllText(Path(name + ".ext"), "[ ext ]\n" + extensions + "\n");
            if (!File.Exists(Path(issuer + "-ca.cnf")))
            {
                WriteCaConfig(issuer); // an intermediate issued here and now issuing
            }

            List<string> args = ["ca", "-batch", "-config", Path(issuer + "-ca.cnf"), "-cert", Cert(issuer), "-keyfile", Key(issuer),
                "-in", Path(name + ".csr"), "-out", Cert(name), "-extfile", Path(name + ".ext"), "-extensions", "ext", "-notext", "-md", digest];
            args.AddRange(startDate is null ? ["-days", "30"] : ["-startdate", startDate, "-enddate", endDate!]);
            OpenSsl([.. args]);
        }
    }

    /// <summary>A self-signed leaf with good leaf extensions and the SAN given to the constructor.</summary>
    public void SelfSigned(string name, string subject)
    {
        NewKey(name);
        OpenSsl("req", "-x509", "-new", "-key", Key(name), "-subj", subject, "-days", "30",
            "-config", Path("req.cnf"), "-extensions", "self_signed_leaf", "-out", Cert(name));
    }

    private static readonly string[] P256 = ["EC", "ec_paramgen_curve:P-256"];

    private void NewKey(string name) => NewKey(name, P256);

    private void NewKey(string name, string[] algorithm) =>
        OpenSsl("genpkey", "-algorithm", algorithm[0], "-pkeyopt", algorithm[1], "-out", Key(name));

    private void WriteCaConfig(string name)
    {
        var caDir = Path(name + "-db");
        System.IO.Directory.CreateDirectory(System.IO.Path.Combine(caDir, "new"));
        File.WriteAllText(System.IO.Path.Combine(caDir, "index.txt"), string.Empty);

        // Each issuer starts its serials in its own range, so that no two certificates here share a serial.
        var serial = Interlocked.Add(ref _nextSerial, 0x1000) - 0x1000;

        File.WriteAllText(System.IO.Path.Combine(caDir, "serial"), serial.ToString("X", System.Globalization.CultureInfo.InvariantCulture) + "\n");
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
}
