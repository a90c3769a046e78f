using System.Buffers;

namespace MeshProxy.Authorization;

/// <summary>Why a path was refused; the pipeline answers 400 with this reason.</summary>
internal enum PathRejection
{
    None,
    NotAbsolute,
    EncodedSlash,
    Backslash,
    EncodedNull,
    InvalidCharacter,
    InvalidPercentEncoding,

    /// <summary>A ';' (raw or %3B): a path parameter to servlet containers, an ordinary character elsewhere.</summary>
    PathParameter,
}

/// <summary>
/// Brings a request path to the one form that policies are matched against and that the application
/// then receives, so that no spelling of a path reaches the app without having been authorized as
/// that same path. In order:
/// <list type="number">
/// <item>Percent-encoded unreserved characters (ALPHA, DIGIT, '-', '.', '_', '~') are decoded once
/// ("/%61dmin" is "/admin", "%2e%2e" is ".."); other escapes stay encoded with uppercase hex digits.
/// "%25" stays "%25": there is no second round of decoding.</item>
/// <item>Repeated slashes are merged and "." and ".." segments resolved (RFC 3986 §5.2.4); ".." never
/// climbs above the root.</item>
/// <item>Refused: an encoded slash or backslash (%2F, %5C), a raw backslash, %00, control or
/// non-ASCII characters, a malformed escape, a path not starting with '/'. Applications disagree on
/// whether "%2F" separates segments and whether '\' is '/', so no single normal form is safe to
/// authorize; refusing them is what Envoy's REJECT_REQUEST option does, and real clients do not send them.</item>
/// <item>Refused: a path parameter, ';' raw or encoded (%3B). Servlet containers cut a segment at ';'
/// ("/admin;x" is "/admin", "/public/..;/admin/x" is "/admin/x"), some frameworks decode "%3B" before they
/// do, and most other stacks keep ';' as a character: no one spelling matches what every app will route,
/// so a DENY on "/admin/*" could be walked around. Refusing is the default rather than stripping the
/// parameters before matching: stripping is right only for apps that strip alike, and it would change the
/// path of apps that do not; real clients hardly send ';' in paths (old ";jsessionid=" URL rewriting aside).</item>
/// </list>
/// Case is kept: paths are case-sensitive (RFC 3986 §6.2.2.1), so "/ADMIN" is a different path from
/// "/admin", and a policy that must also cover an application matching paths case-insensitively has
/// to list both spellings. A trailing slash is kept too ("/admin/" is not "/admin").
/// The input is the path of the raw request target without its query (not ASP.NET Core's decoded
/// Request.Path, which has already turned "%25" into "%" and hides the difference).
/// </summary>
internal static class PathNormalizer
{
    private const int StackLimit = 512;

    /// <summary>The normalized path, or the reason it was refused. Allocates only when the path changes.</summary>
    public static bool TryNormalize(string path, out string normalized, out PathRejection rejection)
    {
        normalized = path;
        rejection = IsClean(path);
        if (rejection != PathRejection.None)
        {
            normalized = string.Empty;
            return false;
        }

        if (IsCanonical(path))
        {
            return true;
        }

        char[]? rented = null;
        Span<char> buffer = path.Length < StackLimit
            ? stackalloc char[StackLimit]
            : (rented = ArrayPool<char>.Shared.Rent(path.Length + 1));
        try
        {
            var decoded = Decode(path, buffer, out rejection);
            if (rejection != PathRejection.None)
            {
                normalized = string.Empty;
                return false;
            }

            var length = RemoveDotSegments(buffer, decoded);
            var result = buffer[..length];
            normalized = result.SequenceEqual(path) ? path : new string(result);
            return true;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<char>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Characters that are refused wherever they appear, before any decoding.</summary>
    private static PathRejection IsClean(string path)
    {
        if (path.Length == 0 || path[0] != '/')
        {
            return PathRejection.NotAbsolute;
        }

        foreach (var c in path)
        {
            if (c == '\\')
            {
                return PathRejection.Backslash;
            }

            if (c == ';')
            {
                return PathRejection.PathParameter;
            }

            // '?' and '#' cannot be in a path: the caller must have split the query off.
            if (c < 0x21 || c > 0x7E || c == '?' || c == '#')
            {
                return PathRejection.InvalidCharacter;
            }
        }

        return PathRejection.None;
    }

    /// <summary>True when the path has no escapes, no empty segment and no dot segment: the common case, no work.</summary>
    private static bool IsCanonical(string path)
    {
        if (path.Contains('%', StringComparison.Ordinal))
        {
            return false;
        }

        for (var i = 0; i < path.Length; i++)
        {
            if (path[i] != '/')
            {
                continue;
            }

            var rest = path.AsSpan(i + 1);
            if (rest.StartsWith('/') || rest is "." or ".." || rest.StartsWith("./") || rest.StartsWith("../"))
            {
                return false;
            }
        }

        return true;
    }

    private static int Decode(string path, Span<char> output, out PathRejection rejection)
    {
        rejection = PathRejection.None;
        var w = 0;
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            if (c != '%')
            {
                output[w++] = c;
                continue;
            }

            if (i + 2 >= path.Length || !char.IsAsciiHexDigit(path[i + 1]) || !char.IsAsciiHexDigit(path[i + 2]))
            {
                rejection = PathRejection.InvalidPercentEncoding;
                return 0;
            }

            var value = (char)((HexValue(path[i + 1]) << 4) | HexValue(path[i + 2]));
            if (value == '\0')
            {
                rejection = PathRejection.EncodedNull;
                return 0;
            }

            if (value is '/' or '\\')
            {
                rejection = PathRejection.EncodedSlash;
                return 0;
            }

            if (value == ';')
            {
                rejection = PathRejection.PathParameter;
                return 0;
            }

            if (char.IsAsciiLetterOrDigit(value) || value is '-' or '.' or '_' or '~')
            {
                output[w++] = value;
            }
            else
            {
                output[w++] = '%';
                output[w++] = char.ToUpperInvariant(path[i + 1]);
                output[w++] = char.ToUpperInvariant(path[i + 2]);
            }

            i += 2;
        }

        return w;
    }

    /// <summary>
    /// In place: the output never overtakes the input, except by the one '/' written after the last
    /// segment, which is why the buffer holds one character more than the path.
    /// </summary>
    private static int RemoveDotSegments(Span<char> buffer, int length)
    {
        var w = 1; // buffer[0] is the leading '/', kept
        var endsAsDirectory = true;
        var i = 1;
        while (i <= length)
        {
            var end = buffer[i..length].IndexOf('/');
            end = end < 0 ? length : i + end;
            var segment = buffer[i..end];
            if (segment.IsEmpty || segment is ".")
            {
                endsAsDirectory = true;
            }
            else if (segment is "..")
            {
                if (w > 1)
                {
                    w--; // the '/' after the previous segment
                    while (buffer[w - 1] != '/')
                    {
                        w--;
                    }
                }

                endsAsDirectory = true;
            }
            else
            {
                segment.CopyTo(buffer[w..]);
                w += segment.Length;
                buffer[w++] = '/';
                endsAsDirectory = false;
            }

            i = end + 1;
        }

        return endsAsDirectory || w == 1 ? w : w - 1;
    }

    private static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
