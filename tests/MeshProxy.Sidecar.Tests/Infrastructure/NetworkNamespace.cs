using System.Diagnostics;

namespace MeshProxy.Sidecar.Tests.Infrastructure;

/// <summary>
/// A network namespace of our own (root and iproute2 required; tests/setup.sh installs them): its own
/// loopback, port space and iptables, so capture rules never touch the machine's.
/// </summary>
internal sealed class NetworkNamespace : IAsyncDisposable
{
    private readonly List<ExternalProcess> _processes = [];

    private NetworkNamespace(string name) => Name = name;

    public string Name { get; }

    public static async Task<NetworkNamespace> CreateAsync()
    {
        var ns = new NetworkNamespace($"mp-test-{Guid.NewGuid().ToString("N")[..8]}");
        await RunAsync("ip", "netns", "add", ns.Name);
        await ns.ExecAsync("ip", "link", "set", "lo", "up");
        return ns;
    }

    /// <summary>Runs a command inside the namespace to completion; throws with its output if it fails.</summary>
    public Task<string> ExecAsync(params string[] command) => RunAsync(["ip", "netns", "exec", Name, .. command]);

    /// <summary>Starts a long-running process inside the namespace; killed when the namespace is disposed.</summary>
    public ExternalProcess Start(params string[] command)
    {
        var process = ExternalProcess.Start("ip", ["netns", "exec", Name, .. command]);
        _processes.Add(process);
        return process;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes)
        {
            await process.DisposeAsync();
        }

        await RunAsync("ip", "netns", "del", Name);
    }

    public static async Task<string> RunAsync(params string[] command)
    {
        var info = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in command.Skip(1))
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{string.Join(' ', command)}' exited {process.ExitCode}: {await stderr}{await stdout}");
        }

        return await stdout;
    }
}
