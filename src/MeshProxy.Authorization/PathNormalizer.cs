using System.Buffers;
using MeshProxy.Config.Resources;

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
/// that same path. The steps depend on MeshConfig's pathNormalization (<see cref="PathNormalizationSpec"/>):
/// <list type="number">
/// <item>Always refused: a path not starting with '/', control or non-ASCII characters, a malformed
/// escape, %00 (Istio rejects %00 in every mode too).</item>
/// <item>STRICT only: refused are an encoded slash or backslash (%2F, %5C) and a raw backslash.
/// Applications disagree on whether "%2F" separates segments and whether '\' is '/', so no single normal
/// form is safe to authorize; refusing them is what Envoy's REJECT_REQUEST option does, and real clients
/// do not send them. The other modes follow Istio: BASE and MERGE_SLASHES read '\' as '/' and keep %2F
/// encoded; DECODE_AND_MERGE_SLASHES decodes %2F and %5C to '/' first.</item>
/// <item>Path parameters (';'): REJECT refuses ';' raw or encoded (%3B); STRIP removes each segment's
/// ";..." before anything else, as servlet containers do ("/admin;x" is "/admin", "/public/..;/admin/x" is
/// "/admin/x"), and refuses %3B, because frameworks disagree on whether it is decoded before the cut;
/// KEEP leaves ';' as a character, which is right only for apps that do not cut segments at it.</item>
/// <item>Every mode but NONE: percent-encoded unreserved characters (ALPHA, DIGIT, '-', '.', '_', '~') are
/// decoded once ("/%61dmin" is "/admin", "%2e%2e" is ".."); other escapes stay encoded with uppercase hex
/// digits; "%25" stays "%25": there is no second round of decoding. Then "." and ".." segments are
/// resolved (RFC 3986 §5.2.4; ".." never climbs above the root), and, in every mode but BASE, repeated
/// slashes are merged.</item>
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

    /// <summary>What the refusal scan saw, so that a clean path skips the rewrite.</summary>
    [Flags]
    private enum Shape
    {
        Plain = 0,
        Escapes = 1,
        Backslashes = 2,
        Parameters = 4,
    }

    /// <summary>The normalized path, or the reason it was refused. Allocates only when the path changes.</summary>
    public static bool TryNormalize(string path, PathNormalizationSpec options, out string normalized, out PathRejection rejection)
    {
        normalized = path;
        rejection = Scan(path, options, out var shape);
        if (rejection != PathRejection.None)
        {
            normalized = string.Empty;
            return false;
        }

        if (IsFinal(path, options, shape))
        {
            return true;
        }

        char[]? rented = null;
        Span<char> buffer = path.Length < StackLimit
            ? stackalloc char[StackLimit]
            : (rented = ArrayPool<char>.Shared.Rent(path.Length + 1));
        try
        {
            var length = Rewrite(path, options, buffer);
            if (options.Normalization != PathNormalization.None)
            {
                length = RemoveDotSegments(buffer, length, mergeSlashes: options.Normalization != PathNormalization.Base);
            }

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

    /// <summary>Every refusal, before anything is rewritten: what is refused does not depend on the rewrite.</summary>
    private static PathRejection Scan(string path, PathNormalizationSpec options, out Shape shape)
    {
        shape = Shape.Plain;
        if (path.Length == 0 || path[0] != '/')
        {
            return PathRejection.NotAbsolute;
        }

        var strict = options.Normalization == PathNormalization.Strict;
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            switch (c)
            {
                case '\\':
                    if (strict)
                    {
                        return PathRejection.Backslash;
                    }

                    shape |= Shape.Backslashes;
                    continue;
                case ';':
                    if (options.PathParameters == PathParameterHandling.Reject)
                    {
                        return PathRejection.PathParameter;
                    }

                    shape |= Shape.Parameters;
                    continue;
                case '%':
                    if (i + 2 >= path.Length || !char.IsAsciiHexDigit(path[i + 1]) || !char.IsAsciiHexDigit(path[i + 2]))
                    {
                        return PathRejection.InvalidPercentEncoding;
                    }

                    var value = Decoded(path, i);
                    if (value == '\0')
                    {
                        return PathRejection.EncodedNull;
                    }

                    if (strict && value is '/' or '\\')
                    {
                        return PathRejection.EncodedSlash;
                    }

                    if (value == ';' && options.PathParameters != PathParameterHandling.Keep)
                    {
                        return PathRejection.PathParameter;
                    }

                    shape |= Shape.Escapes;
                    i += 2;
                    continue;
            }

            // '?' and '#' cannot be in a path: the caller must have split the query off.
            if (c < 0x21 || c > 0x7E || c == '?' || c == '#')
            {
                return PathRejection.InvalidCharacter;
            }
        }

        return PathRejection.None;
    }

    /// <summary>True when the rewrite would change nothing: the common case, no work.</summary>
    private static bool IsFinal(string path, PathNormalizationSpec options, Shape shape)
    {
        var strip = options.PathParameters == PathParameterHandling.Strip && (shape & Shape.Parameters) != 0;
        if (options.Normalization == PathNormalization.None)
        {
            return !strip;
        }

        if (strip || (shape & (Shape.Escapes | Shape.Backslashes)) != 0)
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

    /// <summary>Path parameters cut, backslashes and escapes rewritten as the mode says; <see cref="Scan"/> has refused what it must.</summary>
    private static int Rewrite(string path, PathNormalizationSpec options, Span<char> output)
    {
        var strip = options.PathParameters == PathParameterHandling.Strip;
        var decode = options.Normalization != PathNormalization.None;
        var decodeSlashes = options.Normalization == PathNormalization.DecodeAndMergeSlashes;
        var w = 0;
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            if (c == ';' && strip)
            {
                // The parameter runs to the end of its segment; the '/' that ends it is kept.
                var next = path.IndexOf('/', i);
                i = (next < 0 ? path.Length : next) - 1;
                continue;
            }

            if (c == '\\' && decode)
            {
                output[w++] = '/';
                continue;
            }

            if (c != '%' || !decode)
            {
                output[w++] = c;
                continue;
            }

            var value = Decoded(path, i);
            if (char.IsAsciiLetterOrDigit(value) || value is '-' or '.' or '_' or '~')
            {
                output[w++] = value;
            }
            else if (decodeSlashes && value is '/' or '\\')
            {
                output[w++] = '/';
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
    /// segment, which is why the buffer holds one character more than the path. An empty segment is
    /// dropped when slashes are merged and kept otherwise (RFC 3986 keeps them: "/a//b" is not "/a/b").
    /// </summary>
    private static int RemoveDotSegments(Span<char> buffer, int length, bool mergeSlashes)
    {
        var w = 1; // buffer[0] is the leading '/', kept
        var endsAsDirectory = true;
        var i = 1;
        while (i <= length)
        {
            var end = buffer[i..length].IndexOf('/');
            end = end < 0 ? length : i + end;
            var segment = buffer[i..end];
            if (segment.IsEmpty && !mergeSlashes && end < length)
            {
                buffer[w++] = '/';
                endsAsDirectory = false;
            }
            else if (segment.IsEmpty || segment is ".")
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

    private static char Decoded(string path, int percent) => (char)((HexValue(path[percent + 1]) << 4) | HexValue(path[percent + 2]));

    private static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
