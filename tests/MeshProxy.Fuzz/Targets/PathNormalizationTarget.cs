using System.Text;
using MeshProxy.Authorization;

namespace MeshProxy.Fuzz;

/// <summary>
/// The inbound path normalizer, whose output is both what policies match and what the app receives.
/// Beyond "no exception": a refusal says why; an accepted path is in the normal form the normalizer
/// documents (with no ';', raw or encoded, since path parameters are refused), and normalizing it again
/// changes nothing (a second pass that changed it would mean the app could see a path other than the one
/// authorized).
/// </summary>
internal static class PathNormalizationTarget
{
    public static void Run(ReadOnlySpan<byte> input)
    {
        // Kestrel hands over the raw target with one char per byte.
        var path = Encoding.Latin1.GetString(input);
        if (!PathNormalizer.TryNormalize(path, out var normalized, out var rejection))
        {
            FuzzTargets.Check(rejection != PathRejection.None && normalized.Length == 0, $"refused without a reason ({rejection}, '{normalized}')");
            return;
        }

        FuzzTargets.Check(rejection == PathRejection.None, $"accepted with rejection {rejection}");
        CheckNormalForm(normalized);
        var again = PathNormalizer.TryNormalize(normalized, out var twice, out var secondRejection);
        FuzzTargets.Check(again && twice == normalized, $"not idempotent: '{normalized}' normalizes to '{twice}' ({secondRejection})");
    }

    private static void CheckNormalForm(string path)
    {
        FuzzTargets.Check(path.StartsWith('/'), $"'{path}' does not start with '/'");
        FuzzTargets.Check(!path.Contains("//", StringComparison.Ordinal), $"'{path}' has an empty segment");
        foreach (var segment in path.Split('/'))
        {
            FuzzTargets.Check(segment is not ("." or ".."), $"'{path}' has a dot segment");
        }

        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            FuzzTargets.Check(c is > ' ' and < (char)0x7F and not ('\\' or '?' or '#' or ';'), $"'{path}' has character {(int)c} at {i}");
            if (c != '%')
            {
                continue;
            }

            FuzzTargets.Check(i + 2 < path.Length && char.IsAsciiHexDigitUpper(path[i + 1]) && char.IsAsciiHexDigitUpper(path[i + 2]), $"'{path}' has a malformed or lowercase escape at {i}");
            var value = Convert.ToByte(path.Substring(i + 1, 2), 16);
            FuzzTargets.Check(value is not (0 or (byte)'/' or (byte)'\\' or (byte)';'), $"'{path}' kept a refused escape at {i}");
            FuzzTargets.Check(!char.IsAsciiLetterOrDigit((char)value) && value is not ((byte)'-' or (byte)'.' or (byte)'_' or (byte)'~'), $"'{path}' kept an unreserved character encoded at {i}");
        }
    }
}
