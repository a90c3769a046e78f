namespace MeshProxy.Sidecar.Tests.Infrastructure;

internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    public static string NodeModules => Path.Combine(Root, "tests", "peers", "node_modules");

    public static string Peer(string script) => Path.Combine(AppContext.BaseDirectory, "peers", script);

    /// <summary>The sidecar as a separate process: its DLL sits beside the tests' own (a referenced Exe).</summary>
    public static string SidecarDll => Path.Combine(AppContext.BaseDirectory, "meshproxy-sidecar.dll");

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
