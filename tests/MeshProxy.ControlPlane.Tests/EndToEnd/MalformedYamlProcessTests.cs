using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// YAML that YamlDotNet cannot even tokenize (its scanner throws InvalidOperationException, not YamlException, on
/// this flow mapping left open), given to the control plane and the CLI as processes: the control plane used to
/// abort with exit 134 when the file appeared, and again at every start; `meshproxy validate` printed a stack trace.
/// </summary>
public sealed partial class MalformedYamlProcessTests
{
    /// <summary>The fault-injection run's input; line 2 is where the scanner gives up.</summary>
    private const string Malformed = "a: { b: c\nd:\n";

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task A_malformed_file_written_while_running_is_reported_and_the_control_plane_keeps_serving_the_rest()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "services.yaml", Yaml.Service("cart", "shop", 80, 9001));
        await using var process = ControlPlane(dir);
        var listening = await process.WaitForLineAsync("Control plane listening", TimeSpan.FromSeconds(30));
        var addresses = Listening().Match(listening);
        var grpc = addresses.Groups["grpc"].Value;
        var monitoring = new Uri($"http://{addresses.Groups["monitoring"].Value}");

        Yaml.Write(dir, "x.yaml", Malformed);
        var path = Path.Combine(dir, "x.yaml");
        await TestControlPlane.EventuallyAsync(
            async () => process.HasExited || (await ConfigzAsync(monitoring)).GetProperty("errors").GetArrayLength() > 0,
            "the malformed file reported in /debug/configz", TimeSpan.FromSeconds(30));

        Assert.False(process.HasExited, $"exited {(process.HasExited ? process.ExitCode : 0)}:\n{process.Output}");
        var configz = await ConfigzAsync(monitoring);
        var error = Assert.Single(configz.GetProperty("errors").EnumerateArray());
        Assert.Equal(path, error.GetProperty("file").GetString());
        Assert.Equal(2, error.GetProperty("line").GetInt32());
        Assert.StartsWith("not valid YAML", error.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(["Service/shop/cart"], configz.GetProperty("resources").EnumerateArray().Select(r => r.GetProperty("key").GetString()!).ToArray());
        await process.WaitForLineAsync($"Invalid resource: {path}:2: not valid YAML", TimeSpan.FromSeconds(10));

        // Still serving: ready, and a sidecar connecting now gets what is valid.
        using (var ready = await Http.GetAsync(new Uri(monitoring, "/ready"), TestContext.Current.CancellationToken))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        }

        await using var client = NodePeer.Start("discovery_client.js", grpc, "web", "shop");
        var snapshot = await client.NextSnapshotAsync();
        Assert.Equal("cart", Assert.Single(snapshot.GetProperty("resources").EnumerateArray()).GetProperty("name").GetString());
        Assert.False(process.HasExited);
        AssertNoStackTrace(process.Output);
    }

    [Fact]
    public async Task A_malformed_file_at_start_up_exits_1_naming_file_line_and_reason()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "services.yaml", Yaml.Service("cart", "shop", 80, 9001));
        Yaml.Write(dir, "x.yaml", Malformed);

        await using var process = ControlPlane(dir);
        Assert.Equal(1, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"configuration directory '{dir}' is invalid:", process.Output, StringComparison.Ordinal);
        Assert.Contains($"  {Path.Combine(dir, "x.yaml")}:2: not valid YAML", process.Output, StringComparison.Ordinal);
        AssertNoStackTrace(process.Output);
    }

    [Fact]
    public async Task Meshproxy_validate_of_a_malformed_file_or_its_directory_exits_1_with_the_diagnostic()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "services.yaml", Yaml.Service("cart", "shop", 80, 9001));
        Yaml.Write(dir, "x.yaml", Malformed);
        var path = Path.Combine(dir, "x.yaml");

        foreach (var target in new[] { path, dir })
        {
            await using var process = ExternalProcess.Start("dotnet", [Path.Combine(AppContext.BaseDirectory, "meshproxy.dll"), "validate", target]);
            Assert.Equal(1, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains($"{path}:2: not valid YAML", process.Output, StringComparison.Ordinal);
            Assert.Contains($"{target}: 1 errors", process.Output, StringComparison.Ordinal);
            AssertNoStackTrace(process.Output);
        }
    }

    private static void AssertNoStackTrace(string output)
    {
        Assert.DoesNotContain("Unhandled exception", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
    }

    /// <summary>The control plane as its own process, on kernel-chosen loopback ports (it logs the bound ones).</summary>
    private static ExternalProcess ControlPlane(string directory) =>
        ExternalProcess.Start("dotnet", [Path.Combine(AppContext.BaseDirectory, "meshproxy-controlplane.dll"),
            "--config-dir", directory, "--grpc", "127.0.0.1:0", "--monitoring", "127.0.0.1:0"]);

    private static async Task<JsonElement> ConfigzAsync(Uri monitoring) =>
        await Http.GetFromJsonAsync<JsonElement>(new Uri(monitoring, "/debug/configz"), TestContext.Current.CancellationToken);

    [GeneratedRegex(@"gRPC on (?<grpc>\S+), monitoring on (?<monitoring>\S+),")]
    private static partial Regex Listening();
}
