using System.Diagnostics.CodeAnalysis;

namespace MeshProxy.Identity;

/// <summary>
/// A validated SPIFFE ID (<c>spiffe://trust-domain/path</c>), following the SPIFFE ID standard: lowercase
/// scheme, a trust domain of <c>[a-z0-9._-]</c> only (no port, no user info, no percent-encoding), a path of
/// non-empty segments of <c>[A-Za-z0-9._-]</c> that are not <c>.</c> or <c>..</c>, no query or fragment.
/// The character set is that narrow on purpose: two spellings of one identity must not exist, so IDs
/// compare as plain strings.
/// Workload IDs in this mesh have the path <c>/ns/&lt;namespace&gt;/sa/&lt;service-account&gt;</c>.
/// </summary>
public sealed class SpiffeId : IEquatable<SpiffeId>
{
    public const string Scheme = "spiffe";
    private const string Prefix = "spiffe://";
    private const int MaxTrustDomainLength = 255;
    private const int MaxIdLength = 2048;

    private SpiffeId(string value, string trustDomain, string path, string? ns, string? serviceAccount)
    {
        Value = value;
        TrustDomain = trustDomain;
        Path = path;
        Namespace = ns;
        ServiceAccount = serviceAccount;
    }

    /// <summary>The whole ID as it appears in a URI SAN.</summary>
    public string Value { get; }

    public string TrustDomain { get; }

    /// <summary>The path including its leading slash, or empty for the trust domain's own ID.</summary>
    public string Path { get; }

    /// <summary>The namespace when the path is <c>/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>; otherwise null.</summary>
    public string? Namespace { get; }

    /// <summary>The service account when the path is <c>/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>; otherwise null.</summary>
    public string? ServiceAccount { get; }

    public bool IsWorkload => Namespace is not null;

    /// <summary>Builds <c>spiffe://trustDomain/ns/ns/sa/serviceAccount</c>; throws <see cref="FormatException"/> on invalid parts.</summary>
    public static SpiffeId ForWorkload(string trustDomain, string ns, string serviceAccount)
    {
        ArgumentNullException.ThrowIfNull(trustDomain);
        ArgumentNullException.ThrowIfNull(ns);
        ArgumentNullException.ThrowIfNull(serviceAccount);
        if (!IsValidPathSegment(ns, out var error) || !IsValidPathSegment(serviceAccount, out error))
        {
            throw new FormatException($"'{ns}/{serviceAccount}' cannot form a workload SPIFFE ID: {error}");
        }

        return Parse($"{Prefix}{trustDomain}/ns/{ns}/sa/{serviceAccount}");
    }

    public static SpiffeId Parse(string text) =>
        TryParse(text, out var id, out var error) ? id : throw new FormatException($"'{text}' is not a valid SPIFFE ID: {error}");

    public static bool TryParse([NotNullWhen(true)] string? text, [NotNullWhen(true)] out SpiffeId? id) =>
        TryParse(text, out id, out _);

    public static bool TryParse([NotNullWhen(true)] string? text, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(false)] out string? error)
    {
        id = null;
        if (string.IsNullOrEmpty(text))
        {
            error = "it is empty";
            return false;
        }

        if (text.Length > MaxIdLength)
        {
            error = $"it is longer than {MaxIdLength} characters";
            return false;
        }

        if (!text.StartsWith(Prefix, StringComparison.Ordinal))
        {
            error = "the scheme must be 'spiffe://' (lowercase)";
            return false;
        }

        var rest = text.AsSpan(Prefix.Length);
        var slash = rest.IndexOf('/');
        var trustDomain = slash < 0 ? rest : rest[..slash];
        var path = slash < 0 ? [] : rest[slash..];

        if (!IsValidTrustDomain(trustDomain, out error))
        {
            return false;
        }

        if (!IsValidPath(path, out error))
        {
            return false;
        }

        var pathText = path.ToString();
        string? ns = null, sa = null;
        var segments = pathText.Split('/');
        // "/ns/x/sa/y" splits into ["", "ns", x, "sa", y].
        if (segments.Length == 5 && segments[1] == "ns" && segments[3] == "sa")
        {
            ns = segments[2];
            sa = segments[4];
        }

        id = new SpiffeId(text, trustDomain.ToString(), pathText, ns, sa);
        return true;
    }

    /// <summary>True when <paramref name="name"/> is a valid trust domain name on its own.</summary>
    public static bool IsValidTrustDomain(ReadOnlySpan<char> name, [NotNullWhen(false)] out string? error)
    {
        if (name.IsEmpty)
        {
            error = "the trust domain is missing";
            return false;
        }

        if (name.Length > MaxTrustDomainLength)
        {
            error = $"the trust domain is longer than {MaxTrustDomainLength} characters";
            return false;
        }

        foreach (var c in name)
        {
            if (!(c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_'))
            {
                error = c is >= 'A' and <= 'Z'
                    ? "the trust domain must be lowercase"
                    : $"the trust domain contains '{c}'; only a-z, 0-9, '.', '-' and '_' are allowed (no port, user info or escapes)";
                return false;
            }
        }

        error = null;
        return true;
    }

    /// <summary>True when <paramref name="segment"/> may be one path segment (a namespace or service-account name, say).</summary>
    public static bool IsValidPathSegment(ReadOnlySpan<char> segment, [NotNullWhen(false)] out string? error)
    {
        if (segment.IsEmpty)
        {
            error = "a path segment is empty";
            return false;
        }

        if (segment is "." or "..")
        {
            error = "a path segment is '.' or '..'";
            return false;
        }

        foreach (var c in segment)
        {
            if (!(c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '.' or '-' or '_'))
            {
                error = $"the path contains '{c}'; only A-Z, a-z, 0-9, '.', '-' and '_' are allowed in a segment (no query, fragment or escapes)";
                return false;
            }
        }

        error = null;
        return true;
    }

    private static bool IsValidPath(ReadOnlySpan<char> path, [NotNullWhen(false)] out string? error)
    {
        error = null;
        if (path.IsEmpty)
        {
            return true;
        }

        if (path is "/")
        {
            error = "the path must not end with '/'";
            return false;
        }

        foreach (var range in path[1..].Split('/'))
        {
            if (!IsValidPathSegment(path[1..][range], out error))
            {
                return false;
            }
        }

        return true;
    }

    public bool Equals(SpiffeId? other) => other is not null && string.Equals(Value, other.Value, StringComparison.Ordinal);

    public override bool Equals(object? obj) => Equals(obj as SpiffeId);

    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Value);

    public override string ToString() => Value;

    public static bool operator ==(SpiffeId? left, SpiffeId? right) => left is null ? right is null : left.Equals(right);

    public static bool operator !=(SpiffeId? left, SpiffeId? right) => !(left == right);
}
