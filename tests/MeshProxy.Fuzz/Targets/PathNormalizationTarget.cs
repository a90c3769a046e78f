using System.Text;
using MeshProxy.Authorization;
using MeshProxy.Config.Resources;

namespace MeshProxy.Fuzz;

/// <summary>
/// The inbound path normalizer, whose output is both what policies match and what the app receives, under
/// every MeshConfig pathNormalization choice (each input is tried with all of them, so the seeds keep their
/// meaning). Beyond "no exception": a refusal says why; an accepted path is in the form its mode documents;
/// and normalizing it again changes nothing (a second pass that changed it would mean the app could see a
/// path other than the one authorized).
/// </summary>
internal static class PathNormalizationTarget
{
    private static readonly PathNormalizationSpec[] Modes =
        (from normalization in Enum.GetValues<PathNormalization>()
         from parameters in Enum.GetValues<PathParameterHandling>()
         select new PathNormalizationSpec(normalization, parameters)).ToArray();

    public static void Run(ReadOnlySpan<byte> input)
    {
        // Kestrel hands over the raw target with one char per byte.
        var path = Encoding.Latin1.GetString(input);
        foreach (var options in Modes)
        {
            if (!PathNormalizer.TryNormalize(path, options, out var normalized, out var rejection))
            {
                FuzzTargets.Check(rejection != PathRejection.None && normalized.Length == 0, $"{options}: refused without a reason ({rejection}, '{normalized}')");
                continue;
            }

            FuzzTargets.Check(rejection == PathRejection.None, $"{options}: accepted with rejection {rejection}");
            CheckForm(normalized, options);
            var again = PathNormalizer.TryNormalize(normalized, options, out var twice, out var secondRejection);
            FuzzTargets.Check(again && twice == normalized, $"{options}: not idempotent: '{normalized}' normalizes to '{twice}' ({secondRejection})");
        }
    }

    private static void CheckForm(string path, PathNormalizationSpec options)
    {
        var mode = options.Normalization;
        var normalizing = mode != PathNormalization.None;
        FuzzTargets.Check(path.StartsWith('/'), $"{options}: '{path}' does not start with '/'");
        if (mode is not (PathNormalization.None or PathNormalization.Base))
        {
            FuzzTargets.Check(!path.Contains("//", StringComparison.Ordinal), $"{options}: '{path}' has an empty segment");
        }

        if (normalizing)
        {
            foreach (var segment in path.Split('/'))
            {
                FuzzTargets.Check(segment is not ("." or ".."), $"{options}: '{path}' has a dot segment");
            }
        }

        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            FuzzTargets.Check(c is > ' ' and < (char)0x7F and not ('?' or '#'), $"{options}: '{path}' has character {(int)c} at {i}");
            FuzzTargets.Check(c != '\\' || !normalizing, $"{options}: '{path}' kept a backslash at {i}");
            FuzzTargets.Check(c != ';' || options.PathParameters == PathParameterHandling.Keep, $"{options}: '{path}' kept a path parameter at {i}");
            if (c != '%')
            {
                continue;
            }

            FuzzTargets.Check(i + 2 < path.Length && char.IsAsciiHexDigit(path[i + 1]) && char.IsAsciiHexDigit(path[i + 2]), $"{options}: '{path}' has a malformed escape at {i}");
            var value = Convert.ToByte(path.Substring(i + 1, 2), 16);
            FuzzTargets.Check(value != 0, $"{options}: '{path}' kept %00 at {i}");
            FuzzTargets.Check(value != ';' || options.PathParameters == PathParameterHandling.Keep, $"{options}: '{path}' kept an encoded path parameter at {i}");
            if (!normalizing)
            {
                continue;
            }

            FuzzTargets.Check(char.IsAsciiHexDigitUpper(path[i + 1]) && char.IsAsciiHexDigitUpper(path[i + 2]), $"{options}: '{path}' has a lowercase escape at {i}");
            FuzzTargets.Check(!char.IsAsciiLetterOrDigit((char)value) && value is not ((byte)'-' or (byte)'.' or (byte)'_' or (byte)'~'), $"{options}: '{path}' kept an unreserved character encoded at {i}");
            FuzzTargets.Check(value is not ((byte)'/' or (byte)'\\') || mode is PathNormalization.Base or PathNormalization.MergeSlashes,
                $"{options}: '{path}' kept an encoded slash at {i}");
        }
    }
}
