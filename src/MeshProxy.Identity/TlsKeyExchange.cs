using System.Runtime.InteropServices;

namespace MeshProxy.Identity;

/// <summary>
/// Limits every TLS handshake of this process to the key-exchange groups X25519, P-256 and P-384.
/// OpenSSL 3 also offers the finite-field groups ffdhe2048-ffdhe8192 in TLS 1.3: a client without any
/// certificate can then pick ffdhe8192 and make us spend ~50x an X25519 exchange per handshake (the "DHEat"
/// denial of service). .NET has no per-stream setting for groups, so the list goes into OpenSSL's process-wide
/// <c>system_default</c> TLS configuration, which every SSL_CTX created afterwards starts from: call this
/// before the first TLS connection. Elsewhere than Linux the platform's TLS stack keeps its own defaults.
/// </summary>
public static partial class TlsKeyExchange
{
    /// <summary>The groups offered and accepted, in order of preference (the IANA-recommended elliptic curves).</summary>
    public const string Groups = "X25519:P-256:P-384";

    // Replaces the system_default section of the distribution's openssl.cnf for this process only, so
    // its floor is restated: TLS 1.2 and later.
    private const string Config = $"""
        openssl_conf = meshproxy_init
        [meshproxy_init]
        ssl_conf = meshproxy_ssl
        [meshproxy_ssl]
        system_default = meshproxy_tls
        [meshproxy_tls]
        MinProtocol = TLSv1.2
        Groups = {Groups}

        """;

    private const string LibCrypto = "libcrypto.so.3";
    private static readonly Lazy<string?> Applied = new(Apply);

    /// <summary>Null once the groups are limited (idempotent); otherwise why they could not be.</summary>
    public static string? Restrict() => Applied.Value;

    private static string? Apply()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "not Linux: the platform's TLS defaults apply";
        }

        try
        {
            // The modules that read openssl_conf (ssl_conf among them) must be registered before the text is loaded.
            OpenSslLoadBuiltinModules();
            var bytes = System.Text.Encoding.ASCII.GetBytes(Config);
            var bio = BioNewMemBuf(bytes, bytes.Length);
            if (bio == IntPtr.Zero)
            {
                return "OpenSSL could not allocate a memory BIO";
            }

            var conf = NconfNew(IntPtr.Zero);
            try
            {
                if (conf == IntPtr.Zero)
                {
                    return "OpenSSL could not allocate a configuration";
                }

                if (NconfLoadBio(conf, bio, out var line) != 1)
                {
                    return $"OpenSSL refused the TLS configuration (line {line})";
                }

                return ConfModulesLoad(conf, null, 0) == 1 ? null : "OpenSSL refused to apply the TLS configuration";
            }
            finally
            {
                if (conf != IntPtr.Zero)
                {
                    NconfFree(conf);
                }

                _ = BioFree(bio);
            }
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return $"{LibCrypto} is not OpenSSL 3 as expected: {ex.Message}";
        }
    }

    [LibraryImport(LibCrypto, EntryPoint = "OPENSSL_load_builtin_modules")]
    private static partial void OpenSslLoadBuiltinModules();

    [LibraryImport(LibCrypto, EntryPoint = "BIO_new_mem_buf")]
    private static partial IntPtr BioNewMemBuf(byte[] buffer, int length);

    [LibraryImport(LibCrypto, EntryPoint = "BIO_free")]
    private static partial int BioFree(IntPtr bio);

    [LibraryImport(LibCrypto, EntryPoint = "NCONF_new")]
    private static partial IntPtr NconfNew(IntPtr method);

    [LibraryImport(LibCrypto, EntryPoint = "NCONF_load_bio")]
    private static partial int NconfLoadBio(IntPtr conf, IntPtr bio, out nint errorLine);

    [LibraryImport(LibCrypto, EntryPoint = "NCONF_free")]
    private static partial void NconfFree(IntPtr conf);

    [LibraryImport(LibCrypto, EntryPoint = "CONF_modules_load", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ConfModulesLoad(IntPtr conf, string? appName, nuint flags);
}
