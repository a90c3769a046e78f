using MeshProxy.Config.Parsing;
using MeshProxy.Sidecar.Hosting;
using Microsoft.Extensions.Hosting;

namespace MeshProxy.Sidecar;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        // First, before anything can make a TLS context: limits key exchange to elliptic curves (see TlsKeyExchange).
        MeshProxy.Identity.TlsKeyExchange.Restrict();

        const string Usage = """
            usage: meshproxy-sidecar --config <file> [--validate]

              --config <file>   the bootstrap YAML (a Sidecar resource, and the Services and HttpRoutes it
                                may use); also read from MESHPROXY_CONFIG
              --validate        check the file, print what is wrong, and exit (0 valid, 1 invalid)
            """;

        string? configPath = Environment.GetEnvironmentVariable(MeshProxy.Config.Resources.SidecarEnvironment.Config);
        var validateOnly = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--config" when i + 1 < args.Length:
                    configPath = args[++i];
                    break;
                case "--validate":
                    validateOnly = true;
                    break;
                case "--help" or "-h":
                    Console.WriteLine(Usage);
                    return 0;
                default:
                    Console.Error.WriteLine($"meshproxy-sidecar: unknown argument '{args[i]}'");
                    Console.Error.WriteLine(Usage);
                    return 2;
            }
        }

        if (configPath is null)
        {
            Console.Error.WriteLine("meshproxy-sidecar: no configuration: pass --config <file> or set MESHPROXY_CONFIG");
            return 2;
        }

        if (!File.Exists(configPath))
        {
            Console.Error.WriteLine($"meshproxy-sidecar: configuration file '{configPath}' does not exist");
            return 1;
        }

        IHost host;
        try
        {
            host = SidecarHost.Build(configPath);
        }
        catch (ConfigException ex)
        {
            Console.Error.WriteLine($"meshproxy-sidecar: configuration '{configPath}' is invalid:");
            foreach (var error in ex.Errors)
            {
                Console.Error.WriteLine($"  {error}");
            }

            return 1;
        }
        catch (PodEnvironmentException ex)
        {
            Console.Error.WriteLine($"meshproxy-sidecar: {ex.Message}");
            return 1;
        }

        if (validateOnly)
        {
            Console.WriteLine($"{configPath}: valid");
            host.Dispose();
            return 0;
        }

        try
        {
            await host.RunAsync();
        }
        catch (IOException ex)
        {
            // A port already taken, or an address this host does not have: say so plainly, exit non-zero.
            Console.Error.WriteLine($"meshproxy-sidecar: cannot start listening: {ex.Message}");
            return 1;
        }

        return 0;
    }
}
