namespace MeshProxy.Grpc.Tests.Infrastructure;

internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    public static string TestProject => Path.Combine(Root, "tests", "MeshProxy.Grpc.Tests");

    public static string NodeModules => Path.Combine(Root, "tests", "peers", "node_modules");

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
