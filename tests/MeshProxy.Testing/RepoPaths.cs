namespace MeshProxy.Testing;

/// <summary>Where things are: the repository, the test binaries beside the running tests, the Node peers, temporary directories.</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>tests/peers/node_modules (tests/setup.sh runs npm ci there): NODE_PATH for the Node peers.</summary>
    public static string NodeModules => Path.Combine(Root, "tests", "peers", "node_modules");

    /// <summary>The .proto files the Node peers load at run time.</summary>
    public static string ProtoRoot => Path.Combine(Root, "src", "MeshProxy.Api", "protos");

    /// <summary>A peer script copied beside the test assembly (each test project's peers/ folder).</summary>
    public static string Peer(string script) => Path.Combine(AppContext.BaseDirectory, "peers", script);

    /// <summary>A referenced executable's DLL beside the test assembly, to run with `dotnet`.</summary>
    public static string Bin(string assembly) => Path.Combine(AppContext.BaseDirectory, assembly + ".dll");

    /// <summary>The testdata folder of the test project <paramref name="project"/> (read in place, not copied).</summary>
    public static string TestData(string project) => Path.Combine(Root, "tests", project, "testdata");

    /// <summary>
    /// The command line that runs the sidecar as a separate process with <paramref name="args"/>: by
    /// default `dotnet meshproxy-sidecar.dll` beside the tests' own DLL (a referenced Exe); with
    /// MESHPROXY_SIDECAR_BINARY set, that executable instead, so that the process-level tests can prove
    /// a published build (trimmed, ReadyToRun, Native AOT) as it ships.
    /// </summary>
    public static string[] Sidecar(params string[] args) =>
        Environment.GetEnvironmentVariable("MESHPROXY_SIDECAR_BINARY") is { Length: > 0 } binary
            ? [Path.GetFullPath(binary), .. args]
            : ["dotnet", Bin("meshproxy-sidecar"), .. args];

    /// <summary>A new, empty directory under the system temp directory.</summary>
    public static string NewTempDirectory()
    {
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
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
