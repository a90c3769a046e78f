using System.Runtime.InteropServices;

namespace MeshProxy.Identity;

/// <summary>
/// Ed25519 signature verification (EdDSA JWTs) through OpenSSL's EVP interface, the libcrypto .NET itself
/// loads on Linux. Why not a package: .NET 10 has no Ed25519 type; NSec (and Geralt) bring libsodium as a
/// second native library, BouncyCastle a large managed one, and a hand-written curve implementation is not
/// something to ship in a proxy. A few source-generated <c>[LibraryImport]</c> calls are Native-AOT safe and
/// use the same vetted implementation as the TLS stack (MeshProxy.Identity/TlsKeyExchange does the same).
/// One instance per key; <see cref="Verify"/> is safe to call from many threads (a fresh EVP_MD_CTX each call).
/// </summary>
public sealed partial class Ed25519Verifier : IDisposable
{
    private const string LibCrypto = "libcrypto.so.3";
    private const int EvpPkeyEd25519 = 1087; // NID_ED25519

    private readonly SafePkeyHandle _key;

    private Ed25519Verifier(SafePkeyHandle key)
    {
        _key = key;
    }

    /// <summary>A verifier for a 32-byte public key; null when OpenSSL refuses the key or is not there (then EdDSA keys are left out).</summary>
    public static Ed25519Verifier? Create(ReadOnlySpan<byte> publicKey, out string? why)
    {
        why = null;
        if (publicKey.Length != 32)
        {
            why = "an Ed25519 public key is 32 bytes";
            return null;
        }

        try
        {
            var handle = NewRawPublicKey(EvpPkeyEd25519, IntPtr.Zero, publicKey, (nuint)publicKey.Length);
            if (handle.IsInvalid)
            {
                handle.Dispose();
                ErrClearError();
                why = "OpenSSL refused the Ed25519 key";
                return null;
            }

            return new Ed25519Verifier(handle);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            why = $"{LibCrypto} (OpenSSL 3) is not available for Ed25519: {ex.Message}";
            return null;
        }
    }

    /// <summary>True only for a valid 64-byte signature of <paramref name="data"/> by this key.</summary>
    public bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (signature.Length != 64)
        {
            return false;
        }

        var success = false;
        _key.DangerousAddRef(ref success);
        var context = MdCtxNew();
        try
        {
            if (context == IntPtr.Zero)
            {
                return false;
            }

            // Ed25519 is "pure": no digest is named and the whole message goes to one DigestVerify call.
            var verified = DigestVerifyInit(context, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, _key.DangerousGetHandle()) == 1 &&
                DigestVerify(context, signature, (nuint)signature.Length, data, (nuint)data.Length) == 1;
            if (!verified)
            {
                // A failed verification leaves entries in this thread's OpenSSL error queue; .NET's own
                // OpenSSL calls on this thread must not find them.
                ErrClearError();
            }

            return verified;
        }
        finally
        {
            if (context != IntPtr.Zero)
            {
                MdCtxFree(context);
            }

            if (success)
            {
                _key.DangerousRelease();
            }
        }
    }

    public void Dispose() => _key.Dispose();

    [LibraryImport(LibCrypto, EntryPoint = "EVP_PKEY_new_raw_public_key")]
    private static partial SafePkeyHandle NewRawPublicKey(int type, IntPtr engine, ReadOnlySpan<byte> key, nuint keyLength);

    [LibraryImport(LibCrypto, EntryPoint = "EVP_PKEY_free")]
    private static partial void PkeyFree(IntPtr key);

    [LibraryImport(LibCrypto, EntryPoint = "EVP_MD_CTX_new")]
    private static partial IntPtr MdCtxNew();

    [LibraryImport(LibCrypto, EntryPoint = "EVP_MD_CTX_free")]
    private static partial void MdCtxFree(IntPtr context);

    [LibraryImport(LibCrypto, EntryPoint = "EVP_DigestVerifyInit")]
    private static partial int DigestVerifyInit(IntPtr context, IntPtr keyContext, IntPtr digest, IntPtr engine, IntPtr key);

    [LibraryImport(LibCrypto, EntryPoint = "EVP_DigestVerify")]
    private static partial int DigestVerify(IntPtr context, ReadOnlySpan<byte> signature, nuint signatureLength, ReadOnlySpan<byte> data, nuint dataLength);

    [LibraryImport(LibCrypto, EntryPoint = "ERR_clear_error")]
    private static partial void ErrClearError();

    private sealed class SafePkeyHandle() : SafeHandle(IntPtr.Zero, ownsHandle: true)
    {
        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            PkeyFree(handle);
            return true;
        }
    }
}
