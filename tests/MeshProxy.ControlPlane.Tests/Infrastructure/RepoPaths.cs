namespace MeshProxy.ControlPlane.Tests.Infrastructure;

internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    public static string NodeModules => Path.Combine(Root, "tests", "peers", "node_modules");

    public static string ProtoRoot => Path.Combine(Root, "src", "MeshProxy.Api", "protos");

    public static string Peer(string script) => Path.Combine(AppContext.BaseDirectory, "peers", script);

    public static string NewTempDirectory()
    {
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-cp-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

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
