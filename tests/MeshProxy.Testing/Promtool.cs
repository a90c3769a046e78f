using System.Diagnostics;

namespace MeshProxy.Testing;

/// <summary>The real promtool (tests/setup.sh installs it) checking a text exposition.</summary>
public static class Promtool
{
    /// <summary>
    /// The one lint finding our expositions may have: Istio's metric name, fixed by Istio and used by every
    /// Istio dashboard, is in milliseconds where promtool prefers seconds.
    /// </summary>
    public const string IstioNameLint = "istio_request_duration_milliseconds use base unit \"seconds\" instead of \"milliseconds\"";

    /// <summary>`promtool check metrics` on <paramref name="exposition"/>: its exit code (3 means lint findings only) and output.</summary>
    public static async Task<(int ExitCode, string Output)> CheckMetricsAsync(string exposition)
    {
        var start = new ProcessStartInfo("promtool", "check metrics")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start) ?? throw new InvalidOperationException("promtool did not start");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
            var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
            await process.StandardInput.WriteAsync(exposition.AsMemory(), timeout.Token);
            process.StandardInput.Close();
            await process.WaitForExitAsync(timeout.Token);
            return (process.ExitCode, await stdout + await stderr);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    /// <summary>The lines of promtool's output, trimmed, without empty ones.</summary>
    public static string[] Findings(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
