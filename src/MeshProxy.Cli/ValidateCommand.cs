using MeshProxy.Config.Parsing;

namespace MeshProxy.Cli;

/// <summary>`meshproxy validate`: the same parser the sidecar and the control plane use, so what passes here loads there.</summary>
internal static class ValidateCommand
{
    public static int Run(string path, TextWriter output, TextWriter error)
    {
        ParseResult result;
        if (Directory.Exists(path))
        {
            result = ResourceParser.ParseDirectory(path);
        }
        else if (File.Exists(path))
        {
            result = ResourceParser.ParseFile(path);
        }
        else
        {
            error.WriteLine($"meshproxy validate: '{path}' is neither a file nor a directory");
            return 2;
        }

        foreach (var warning in result.Warnings)
        {
            error.WriteLine($"warning: {warning}");
        }

        foreach (var problem in result.Errors)
        {
            output.WriteLine(problem);
        }

        output.WriteLine(result.IsValid
            ? $"{path}: {result.Resources.Count} resources valid"
            : $"{path}: {result.Errors.Count} errors, {result.Resources.Count} resources valid");
        return result.IsValid ? 0 : 1;
    }
}
