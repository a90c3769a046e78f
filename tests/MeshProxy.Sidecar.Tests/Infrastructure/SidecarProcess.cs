using System.Net;
using System.Text.RegularExpressions;

namespace MeshProxy.Sidecar.Tests.Infrastructure;

/// <summary>The sidecar as its own OS process, for what only a process shows: signals, exit codes, stderr.</summary>
internal sealed partial class SidecarProcess : IAsyncDisposable
{
    private readonly ExternalProcess _process;

    private SidecarProcess(ExternalProcess process, string configPath)
    {
        _process = process;
        ConfigPath = configPath;
    }

    public ExternalProcess Process => _process;

    /// <summary>The bootstrap file the process watches.</summary>
    public string ConfigPath { get; }

    public IPEndPoint Outbound { get; private set; } = null!;

    public IPEndPoint Inbound { get; private set; } = null!;

    public IPEndPoint Admin { get; private set; } = null!;

    public IPEndPoint Stats { get; private set; } = null!;

    public static ExternalProcess Launch(string configPath, params string[] extraArgs) => Launch(configPath, environment: null, extraArgs);

    public static ExternalProcess Launch(string configPath, IReadOnlyDictionary<string, string>? environment, params string[] extraArgs)
    {
        var env = new Dictionary<string, string>(environment ?? new Dictionary<string, string>()) { ["Logging__Console__FormatterName"] = "simple" };
        var command = RepoPaths.Sidecar(["--config", configPath, .. extraArgs]);
        return ExternalProcess.Start(command[0], command[1..], env);
    }

    /// <summary>Starts the process (with <paramref name="environment"/> added) and waits until every listener has logged its bound address.</summary>
    public static async Task<SidecarProcess> StartAsync(MeshYaml yaml, IReadOnlyDictionary<string, string>? environment = null)
    {
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
        var path = yaml.WriteTo(dir);
        var process = new SidecarProcess(Launch(path, environment), path);
        var timeout = TimeSpan.FromSeconds(30);
        process.Admin = await process.ListenerAsync("admin", timeout);
        process.Stats = await process.ListenerAsync("stats", timeout);
        process.Inbound = await process.ListenerAsync("inbound", timeout);
        process.Outbound = await process.ListenerAsync("outbound", timeout);
        return process;
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();

    private async Task<IPEndPoint> ListenerAsync(string name, TimeSpan timeout)
    {
        var line = await _process.WaitForLineAsync($"{name} listener on ", timeout);
        return IPEndPoint.Parse(ListenerAddress().Match(line).Groups[1].Value);
    }

    [GeneratedRegex(@"listener on (\S+)")]
    private static partial Regex ListenerAddress();
}
