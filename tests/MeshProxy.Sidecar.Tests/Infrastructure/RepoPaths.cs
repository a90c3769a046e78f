namespace MeshProxy.Sidecar.Tests.Infrastructure;

internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    public static string NodeModules => Path.Combine(Root, "tests", "peers", "node_modules");

    public static string Peer(string script) => Path.Combine(AppContext.BaseDirectory, "peers", script);

    /// <summary>
    /// The command line that runs the sidecar as a separate process with <paramref name="args"/>: by
    /// default `dotnet meshproxy-sidecar.dll` beside the tests' own DLL (a referenced Exe); with
    /// MESHPROXY_SIDECAR_BINARY set, that executable instead, so that the process-level tests can prove
    /// a published build (trimmed, ReadyToRun, Native AOT) as it ships.
    /// </summary>
    public static string[] Sidecar(params string[] args) =>
        Environment.GetEnvironmentVariable("MESHPROXY_SIDECAR_BINARY") is { Length: > 0 } binary
            ? [Path.GetFullPath(binary), .. args]
            : ["dotnet", Path.Combine(AppContext.BaseDirectory, "meshproxy-sidecar.dll"), .. args];

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "MeshProxy.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("MeshProxy.sln not found above " + AppContext.BaseDirectory);
    }
}
