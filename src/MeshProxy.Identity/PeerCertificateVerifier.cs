using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.Identity;

/// <summary>Which side of the handshake the peer is on; it decides the extended key usage the peer needs.</summary>
public enum PeerRole
{
    /// <summary>We are the server; the peer is a client and needs clientAuth.</summary>
    Client,

    /// <summary>We are the client; the peer is a server and needs serverAuth.</summary>
    Server,
}

public enum PeerVerificationFailure
{
    None,
    NoCertificate,
    Expired,
    NotYetValid,
    UntrustedIssuer,
    SelfSigned,
    WrongTrustDomain,
    NoUriSan,
    MultipleUriSans,
    NotSpiffe,
    WrongKeyUsage,
    IsCa,
    IdentityNotAllowed,

    /// <summary>A certificate on the path has a key below 2048-bit RSA / 256-bit EC, or an MD5/SHA-1 signature.</summary>
    WeakCryptography,
}

/// <summary>The outcome of checking a peer: its SPIFFE ID, or why it was refused.</summary>
public sealed class PeerVerificationResult
{
    private PeerVerificationResult(SpiffeId? id, PeerVerificationFailure failure, string message)
    {
        SpiffeId = id;
        Failure = failure;
        Message = message;
    }

    public bool IsValid => Failure == PeerVerificationFailure.None;

    public SpiffeId? SpiffeId { get; }

    public PeerVerificationFailure Failure { get; }

    public string Message { get; }

    internal static PeerVerificationResult Valid(SpiffeId id) => new(id, PeerVerificationFailure.None, $"verified {id}");

    internal static PeerVerificationResult Fail(PeerVerificationFailure failure, string message) => new(null, failure, message);

    public override string ToString() => IsValid ? Message : $"{Failure}: {Message}";
}

/// <summary>
/// Checks an X.509 SVID a peer presented: chain to the trust bundle only (no system roots, no revocation, no
/// downloads), validity, leaf-only constraints, usages, and exactly one SPIFFE URI SAN in the expected trust
/// domain (and, if given, in the allowed set). A null trust domain accepts any, for a caller that does not know
/// it yet and checks the returned ID itself. Stateless and thread-safe: nothing is cached between calls.
/// </summary>
public sealed class PeerCertificateVerifier
{
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    public PeerCertificateVerifier(TimeProvider? time = null, ILogger<PeerCertificateVerifier>? logger = null)
    {
        _time = time ?? TimeProvider.System;
        _logger = logger ?? (ILogger)NullLogger.Instance;
    }

    public PeerVerificationResult Verify(
        X509Certificate2? peer,
        X509Certificate2Collection? extraChain,
        TrustBundle trustBundle,
        string? expectedTrustDomain,
        PeerRole role,
        IReadOnlySet<SpiffeId>? allowed = null)
    {
        ArgumentNullException.ThrowIfNull(trustBundle);

        if (peer is null)
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.NoCertificate, $"the {Describe(role)} presented no certificate");
        }

        var now = _time.GetUtcNow();
        var notBefore = Certificates.NotBefore(peer);
        var notAfter = Certificates.NotAfter(peer);
        if (now < notBefore)
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.NotYetValid, $"the certificate is not valid before {notBefore:O} (now {now:O})");
        }

        if (now > notAfter)
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.Expired, $"the certificate expired at {notAfter:O} (now {now:O})");
        }

        if (Certificates.IsCa(peer))
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.IsCa, "the certificate is a CA certificate (CA:true); a workload must present a leaf");
        }

        if (BuildChain(peer, extraChain, trustBundle, now) is { } chainFailure)
        {
            return chainFailure;
        }

        if (Certificates.KeyUsage(peer) is not { } usage || !usage.HasFlag(X509KeyUsageFlags.DigitalSignature))
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.WrongKeyUsage, "the certificate's key usage lacks digitalSignature");
        }

        var neededEku = role == PeerRole.Client ? Certificates.ClientAuth : Certificates.ServerAuth;
        if (Certificates.EnhancedKeyUsage(peer) is { } eku && !Certificates.HasUsage(eku, neededEku))
        {
            return PeerVerificationResult.Fail(
                PeerVerificationFailure.WrongKeyUsage, $"the certificate's extended key usage lacks {(role == PeerRole.Client ? "clientAuth" : "serverAuth")}");
        }

        return CheckIdentity(peer, expectedTrustDomain, allowed);
    }

    /// <summary>
    /// Checks a workload's own SVID exactly as its peers will, as a client and as a server, so that nothing peers
    /// would refuse is ever installed. Null when both roles accept it; otherwise the role refused and why.
    /// </summary>
    public (PeerRole Role, PeerVerificationResult Result)? VerifyOwn(X509Svid svid, TrustBundle trustBundle, string trustDomain, IReadOnlySet<SpiffeId>? allowed = null)
    {
        ArgumentNullException.ThrowIfNull(svid);
        foreach (var role in (ReadOnlySpan<PeerRole>)[PeerRole.Client, PeerRole.Server])
        {
            var check = Verify(svid.Certificate, [.. svid.Intermediates], trustBundle, trustDomain, role, allowed);
            if (!check.IsValid)
            {
                return (role, check);
            }
        }

        return null;
    }

    /// <summary>
    /// A callback for <see cref="SslServerAuthenticationOptions.RemoteCertificateValidationCallback"/> (role
    /// <see cref="PeerRole.Client"/>) or <see cref="SslClientAuthenticationOptions.RemoteCertificateValidationCallback"/>
    /// (role <see cref="PeerRole.Server"/>). The platform's own policy errors are ignored on purpose: they judge the
    /// peer against the system roots, which the mesh does not trust. <paramref name="trustBundle"/> is read on every
    /// handshake so that a rotated bundle applies at once.
    /// </summary>
    public RemoteCertificateValidationCallback CreateCallback(
        Func<TrustBundle> trustBundle, string expectedTrustDomain, PeerRole role, IReadOnlySet<SpiffeId>? allowed = null, Action<PeerVerificationResult>? onResult = null)
    {
        ArgumentNullException.ThrowIfNull(trustBundle);
        return (_, certificate, chain, _) =>
        {
            var peer = certificate as X509Certificate2 ?? (certificate is null ? null : X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
            var result = Verify(peer, chain?.ChainPolicy.ExtraStore, trustBundle(), expectedTrustDomain, role, allowed);
            if (!result.IsValid)
            {
                Log.PeerRefused(_logger, role.ToString(), result.Failure.ToString(), result.Message);
            }

            onResult?.Invoke(result);
            return result.IsValid;
        };
    }

    private static PeerVerificationResult? BuildChain(X509Certificate2 peer, X509Certificate2Collection? extraChain, TrustBundle trustBundle, DateTimeOffset now)
    {
        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        foreach (var root in trustBundle.Roots)
        {
            policy.CustomTrustStore.Add(root);
        }

        if (extraChain is not null)
        {
            foreach (var extra in extraChain)
            {
                // A peer's own copy of a root adds nothing and must not be mistaken for an anchor.
                if (!extra.RawDataMemory.Span.SequenceEqual(peer.RawDataMemory.Span))
                {
                    policy.ExtraStore.Add(extra);
                }
            }
        }

        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.VerificationTime = now.LocalDateTime;
        policy.VerificationTimeIgnored = false;

        try
        {
            if (chain.Build(peer))
            {
                // Every certificate the peer's path rests on, except the anchor, which is the operator's own trust.
                var elements = chain.ChainElements;
                for (var i = 0; i < elements.Count - 1; i++)
                {
                    if (CryptoStrength.Weakness(elements[i].Certificate) is { } weakness)
                    {
                        return PeerVerificationResult.Fail(PeerVerificationFailure.WeakCryptography, weakness);
                    }
                }

                return null;
            }

            var flags = X509ChainStatusFlags.NoError;
            foreach (var status in chain.ChainStatus)
            {
                flags |= status.Status;
            }

            if (Certificates.IsSelfIssued(peer))
            {
                return PeerVerificationResult.Fail(PeerVerificationFailure.SelfSigned, "the certificate is self-signed, not issued by the mesh CA");
            }

            if (flags.HasFlag(X509ChainStatusFlags.NotTimeValid))
            {
                return PeerVerificationResult.Fail(PeerVerificationFailure.Expired, "a certificate in the peer's chain is outside its validity period");
            }

            var detail = string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0));
            return PeerVerificationResult.Fail(PeerVerificationFailure.UntrustedIssuer, $"the certificate (issuer '{peer.Issuer}') does not chain to the trust bundle: {detail}");
        }
        catch (CryptographicException ex)
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.UntrustedIssuer, $"the chain cannot be built: {ex.Message}");
        }
        finally
        {
            foreach (var element in chain.ChainElements)
            {
                element.Certificate.Dispose();
            }
        }
    }

    private static PeerVerificationResult CheckIdentity(X509Certificate2 peer, string? expectedTrustDomain, IReadOnlySet<SpiffeId>? allowed)
    {
        var extension = SubjectAltNames.Find(peer.Extensions);
        if (extension is null)
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.NoUriSan, "the certificate has no subjectAltName");
        }

        SubjectAltNames.Names names;
        try
        {
            names = SubjectAltNames.Read(extension.RawData);
        }
        catch (CryptographicException ex)
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.NotSpiffe, ex.Message);
        }

        if (names.Uris.Count == 0)
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.NoUriSan, "the certificate has no URI SAN");
        }

        if (names.Uris.Count > 1)
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.MultipleUriSans, $"the certificate has {names.Uris.Count} URI SANs; an SVID has exactly one");
        }

        if (!SpiffeId.TryParse(names.Uris[0], out var id, out var error))
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.NotSpiffe, $"the URI SAN '{names.Uris[0]}' is not a SPIFFE ID: {error}");
        }

        if (expectedTrustDomain is not null && !string.Equals(id.TrustDomain, expectedTrustDomain, StringComparison.Ordinal))
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.WrongTrustDomain, $"{id} is not in trust domain '{expectedTrustDomain}'");
        }

        if (allowed is not null && !allowed.Contains(id))
        {
            return PeerVerificationResult.Fail(PeerVerificationFailure.IdentityNotAllowed, $"{id} is not one of the identities this peer may have");
        }

        return PeerVerificationResult.Valid(id);
    }

    private static string Describe(PeerRole role) => role == PeerRole.Client ? "client" : "server";
}
