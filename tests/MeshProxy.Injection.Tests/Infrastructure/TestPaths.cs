namespace MeshProxy.Injection.Tests.Infrastructure;

internal static class TestPaths
{
    public static string Root { get; } = FindRoot();

    public static string TestData => Path.Combine(Root, "tests", "MeshProxy.Injection.Tests", "testdata");

    public static string Bin(string assembly) => Path.Combine(AppContext.BaseDirectory, assembly + ".dll");

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
