using System.Net.Http.Json;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>
/// YAML that YamlDotNet cannot even tokenize (its scanner throws InvalidOperationException, not YamlException,
/// on this flow mapping left open) given to the sidecar as a process: it used to abort with exit 134.
/// </summary>
public sealed class MalformedYamlProcessTests
{
    /// <summary>The fault-injection run's input; line 2 is where the scanner gives up.</summary>
    private const string Malformed = "a: { b: c\nd:\n";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_watched_bootstrap_turning_malformed_keeps_the_process_up_on_its_last_good_config_and_config_dump_shows_why()
    {
        await using var blue = await Backend.StartAsync("blue");
        await using var green = await Backend.StartAsync("green");
        await using var sidecar = await SidecarProcess.StartAsync(new MeshYaml("store", 1).Service("billing", 80, "HTTP", blue.Port));
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal("blue\n", await GetAsync(client, sidecar));
        var good = await DumpAsync(client, sidecar);

        await File.WriteAllTextAsync(sidecar.ConfigPath, Malformed, Ct);
        var dump = await WaitForDumpAsync(client, sidecar, d => d.GetProperty("lastError").ValueKind == JsonValueKind.Object);

        Assert.False(sidecar.Process.HasExited, sidecar.Process.Output);
        Assert.Equal(good.GetProperty("version").GetString(), dump.GetProperty("version").GetString());
        // The first error is the parser's; the builder adds that no Sidecar resource was left.
        var error = dump.GetProperty("lastError").GetProperty("errors")[0];
        Assert.Equal(sidecar.ConfigPath, error.GetProperty("file").GetString());
        Assert.Equal(2, error.GetProperty("line").GetInt32());
        Assert.Equal("not valid YAML: cannot be read past this point (InvalidOperationException)", error.GetProperty("reason").GetString());
        Assert.Equal("blue\n", await GetAsync(client, sidecar));
        Assert.DoesNotContain("Unhandled exception", sidecar.Process.Output, StringComparison.Ordinal);

        // Fixed: the new file is in force and the refusal it replaced is no longer reported as the last error.
        await File.WriteAllTextAsync(sidecar.ConfigPath, new MeshYaml("store", 1).Service("billing", 80, "HTTP", green.Port).ToString(), Ct);
        dump = await WaitForDumpAsync(client, sidecar, d => d.GetProperty("version").GetString() != good.GetProperty("version").GetString());
        Assert.Equal(JsonValueKind.Null, dump.GetProperty("lastError").ValueKind);
        Assert.Equal("green\n", await GetAsync(client, sidecar));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_malformed_bootstrap_given_to_validate_or_at_start_up_exits_1_with_file_line_and_reason(bool validate)
    {
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, "mesh.yaml");
        await File.WriteAllTextAsync(path, Malformed, Ct);

        await using var process = validate ? SidecarProcess.Launch(path, "--validate") : SidecarProcess.Launch(path);
        Assert.Equal(1, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"configuration '{path}' is invalid:", process.Output, StringComparison.Ordinal);
        Assert.Contains($"  {path}:2: not valid YAML", process.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", process.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", process.Output, StringComparison.Ordinal);
    }

    private static async Task<string> GetAsync(HttpClient client, SidecarProcess sidecar)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://{sidecar.Outbound}/");
        request.Headers.Host = "billing";
        using var response = await client.SendAsync(request, Ct);
        return await response.Content.ReadAsStringAsync(Ct);
    }

    private static async Task<JsonElement> DumpAsync(HttpClient client, SidecarProcess sidecar) =>
        await client.GetFromJsonAsync<JsonElement>($"http://{sidecar.Admin}/config_dump", Ct);

    /// <summary>The file watcher is asynchronous: polls /config_dump until <paramref name="condition"/> holds (a generous bound, not a timing claim).</summary>
    private static async Task<JsonElement> WaitForDumpAsync(HttpClient client, SidecarProcess sidecar, Func<JsonElement, bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            var dump = await DumpAsync(client, sidecar);
            if (condition(dump))
            {
                return dump;
            }

            Assert.True(DateTime.UtcNow < deadline && !sidecar.Process.HasExited, $"the change was not picked up; output:\n{sidecar.Process.Output}");
            await Task.Delay(100, Ct);
        }
    }
}
