using System.Diagnostics;
using MeshProxy.Injection.Capture;

namespace MeshProxy.Init;

/// <summary>Installs (or with --dry-run prints) a pod's capture rules through iptables-restore.</summary>
internal static class CaptureInstaller
{
    public const string Usage = """
        usage: meshproxy-init [--dry-run] [options]      install the pod's traffic capture (nat table)
               meshproxy-init wait --url <url> [--timeout-seconds <n>]

          --proxy-uid <uid>, --proxy-gid <gid>           the sidecar's user and group (1337), never captured
          --outbound-port <port>                         where outbound TCP goes (15001)
          --inbound-port <port>                          where inbound TCP goes (15006)
          --include-inbound-ports <* | p,p>              inbound ports captured (* = all)
          --exclude-inbound-ports <p,p>                  with *: ports left alone (15000,15001,15006,15020 always are)
          --exclude-outbound-ports <p,p>                 destination ports not captured
          --exclude-outbound-ip-ranges <cidr,cidr>       destinations not captured
          --include-outbound-ip-ranges <* | cidr,cidr>   destinations captured (* = all)
          --dry-run                                      print the iptables-restore input, change nothing
        Running again replaces the MESHPROXY_* chains and their jumps; it never duplicates them.
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        if (args is ["--help" or "-h"])
        {
            Console.WriteLine(Usage);
            return 0;
        }

        CaptureSettings settings;
        bool dryRun;
        try
        {
            settings = CaptureSettings.FromInitArgs(args, out dryRun);
        }
        catch (CaptureSettingsException ex)
        {
            await Console.Error.WriteLineAsync($"meshproxy-init: {ex.Message}\n{Usage}");
            return 2;
        }

        if (dryRun)
        {
            Console.Write(IptablesRules.Build(settings));
            return 0;
        }

        var (saved, saveError, saveExit) = await RunAsync("iptables-save", ["-t", "nat"], null);
        if (saveExit != 0)
        {
            await Console.Error.WriteLineAsync($"meshproxy-init: iptables-save -t nat failed ({saveExit}): {saveError.Trim()}");
            return 1;
        }

        var (prerouting, output) = IptablesRules.CountJumps(saved);
        var rules = IptablesRules.Build(settings, prerouting, output);
        Console.Write(rules);
        var (_, restoreError, restoreExit) = await RunAsync("iptables-restore", ["--noflush"], rules);
        if (restoreExit != 0)
        {
            await Console.Error.WriteLineAsync($"meshproxy-init: iptables-restore --noflush failed ({restoreExit}): {restoreError.Trim()}");
            return 1;
        }

        Console.WriteLine("meshproxy-init: capture installed");
        return 0;
    }

    private static async Task<(string Stdout, string Stderr, int Exit)> RunAsync(string file, string[] args, string? input)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(info)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return (string.Empty, $"cannot run {file}: {ex.Message}", 127);
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (input is not null)
            {
                await process.StandardInput.WriteAsync(input);
            }

            process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await process.WaitForExitAsync(timeout.Token);
            return (await stdout, await stderr, process.ExitCode);
        }
    }
}
