using System.Diagnostics;

namespace MeshProxy.Testing;

public sealed record RunResult(int Exit, string Stdout, string Stderr);

/// <summary>Runs a process to completion within a bound (a process the test waits for; <see cref="ExternalProcess"/> is for one that keeps running).</summary>
public static class Run
{
    public static async Task<RunResult> ProcessAsync(string file, IEnumerable<string> args, string? stdin = null, int timeoutSeconds = 60)
    {
        using var process = Start(file, args);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
        }

        process.StandardInput.Close();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in {timeoutSeconds}s");
        }

        return new RunResult(process.ExitCode, await stdout, await stderr);
    }

    public static Task<RunResult> DotnetAsync(string assembly, params string[] args) =>
        ProcessAsync("dotnet", [RepoPaths.Bin(assembly), .. args]);

    /// <summary>Runs a command to completion (bounded) and returns its stdout; throws with its stderr when it fails.</summary>
    public static string Checked(string file, params string[] args)
    {
        using var process = Start(file, args);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(30_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 30 s");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({process.ExitCode}): {stderr.Result}");
        }

        return stdout.Result;
    }

    private static Process Start(string file, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        return Process.Start(info)!;
    }
}
