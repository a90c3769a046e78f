namespace MeshProxy.Identity;

/// <summary>How the control plane's CA issues workload certificates.</summary>
public sealed record CertificateAuthorityOptions
{
    public required string TrustDomain { get; init; }

    /// <summary>Lifetime of a workload certificate when the request names none.</summary>
    public TimeSpan DefaultTtl { get; init; } = TimeSpan.FromHours(24);

    /// <summary>Longest lifetime the CA grants; longer requests are clamped to it, not refused.</summary>
    public TimeSpan MaxTtl { get; init; } = TimeSpan.FromHours(48);

    /// <summary>Lifetime of a root the CA generates for itself.</summary>
    public TimeSpan RootValidity { get; init; } = TimeSpan.FromDays(3650);

    /// <summary>Backdating of not-before so that a peer whose clock is a little behind accepts a fresh certificate.</summary>
    public TimeSpan ClockSkewAllowance { get; init; } = TimeSpan.FromMinutes(1);

    internal void Validate()
    {
        if (!SpiffeId.IsValidTrustDomain(TrustDomain, out var error))
        {
            throw new ArgumentException($"TrustDomain '{TrustDomain}': {error}", nameof(TrustDomain));
        }

        if (DefaultTtl <= TimeSpan.Zero || MaxTtl <= TimeSpan.Zero || DefaultTtl > MaxTtl)
        {
            throw new ArgumentException($"DefaultTtl ({DefaultTtl}) and MaxTtl ({MaxTtl}) must be positive, with DefaultTtl <= MaxTtl");
        }

        if (RootValidity <= MaxTtl)
        {
            throw new ArgumentException($"RootValidity ({RootValidity}) must be longer than MaxTtl ({MaxTtl})");
        }

        if (ClockSkewAllowance < TimeSpan.Zero)
        {
            throw new ArgumentException("ClockSkewAllowance must not be negative");
        }
    }
}

/// <summary>What a CA returns for a CSR: the chain (leaf first, then intermediates) and the roots to trust, both PEM.</summary>
public sealed record IssuedCertificate(string CertificateChainPem, string TrustBundlePem);

/// <summary>Why a CSR was refused.</summary>
public enum SigningRefusal
{
    /// <summary>Not a readable PKCS#10 request.</summary>
    MalformedCsr,

    /// <summary>The request's signature does not verify with its own public key.</summary>
    BadSignature,

    /// <summary>The request names no URI SAN.</summary>
    NoUriSan,

    /// <summary>The request names more than one URI SAN.</summary>
    MultipleUriSans,

    /// <summary>The request names DNS, IP, e-mail or other SANs besides the SPIFFE ID.</summary>
    OtherSubjectAltNames,

    /// <summary>The URI SAN is not the identity the caller is entitled to.</summary>
    IdentityMismatch,

    /// <summary>The entitled identity is outside this CA's trust domain.</summary>
    ForeignTrustDomain,

    /// <summary>A key type or curve the CA does not sign for.</summary>
    UnsupportedKey,

    /// <summary>An RSA key shorter than 2048 bits.</summary>
    WeakKey,

    /// <summary>A zero or negative TTL.</summary>
    InvalidTtl,

    /// <summary>The CA's own certificate has expired or is not valid yet.</summary>
    CaNotValid,
}

/// <summary>A CSR the CA will not sign, and why.</summary>
public sealed class SigningRefusedException : Exception
{
    public SigningRefusedException(SigningRefusal reason, string message)
        : base(message)
    {
        Reason = reason;
    }

    public SigningRefusedException(SigningRefusal reason, string message, Exception inner)
        : base(message, inner)
    {
        Reason = reason;
    }

    public SigningRefusal Reason { get; }
}

/// <summary>The CA cannot start: missing, unreadable, unsafe or inconsistent key material.</summary>
public sealed class CertificateAuthorityException : Exception
{
    public CertificateAuthorityException(string message)
        : base(message)
    {
    }

    public CertificateAuthorityException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
