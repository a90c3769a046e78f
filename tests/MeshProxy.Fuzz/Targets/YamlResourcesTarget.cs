using System.Text;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Validation;

namespace MeshProxy.Fuzz;

/// <summary>
/// Resource files and a pod's override, through the same readers the control plane, the sidecar's
/// bootstrap and the injector use, then the cross-resource validation. Beyond "no exception": every
/// diagnostic names the file, a line and a reason, and none is ResourceParser's last-resort catch
/// ("document N cannot be read (SomeException...)"), which keeps the process alive but means one of our
/// readers did not foresee a shape of input; the fuzzer reports it so that reader gets fixed.
/// </summary>
internal static class YamlResourcesTarget
{
    private const string File = "fuzz.yaml";

    public static void Run(ReadOnlySpan<byte> input)
    {
        // Invalid UTF-8 becomes U+FFFD, as File.ReadAllText does for the real readers.
        var text = Encoding.UTF8.GetString(input);
        var result = ResourceParser.ParseText(text, File);
        foreach (var error in result.Errors.Concat(result.Warnings))
        {
            FuzzTargets.Check(error.File == File && error.Line >= 0 && !string.IsNullOrWhiteSpace(error.Reason), $"diagnostic without file, line or reason: {error}");
            FuzzTargets.Check(!error.Reason.Contains(" cannot be read (", StringComparison.Ordinal), $"a reader threw: {error}");
        }

        _ = ResourceSetValidator.Validate(result.Resources);

        var pod = SidecarOverrideParser.Parse(text, "override");
        FuzzTargets.Check(pod.Override is not null != pod.Errors.Count > 0, $"override: {(pod.Override is null ? "neither an override nor an error" : "both an override and errors")}");
    }
}
