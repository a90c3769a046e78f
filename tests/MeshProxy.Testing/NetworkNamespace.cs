using System.Diagnostics;

namespace MeshProxy.Testing;

/// <summary>
/// A network namespace of our own (root and iproute2 required; tests/setup.sh installs them): its own
/// loopback, port space and iptables, so capture rules never touch the machine's. Removing it takes its interfaces
/// (a veth end moved in, and with it the pair), its iptables rules and its /etc/netns files with it.
/// </summary>
public sealed class NetworkNamespace : IAsyncDisposable
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

    /// <summary>
    /// The namespace's own /etc/hosts (what cluster DNS answers in a pod): <c>ip netns exec</c> bind-mounts
    /// /etc/netns/&lt;name&gt;/hosts over /etc/hosts for every command it runs.
    /// </summary>
    public void SetHosts(string hosts)
    {
        Directory.CreateDirectory(EtcDirectory);
        File.WriteAllText(Path.Combine(EtcDirectory, "hosts"), hosts);
    }

    private string EtcDirectory => Path.Combine("/etc/netns", Name);

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
        if (Directory.Exists(EtcDirectory))
        {
            Directory.Delete(EtcDirectory, recursive: true);
        }
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
