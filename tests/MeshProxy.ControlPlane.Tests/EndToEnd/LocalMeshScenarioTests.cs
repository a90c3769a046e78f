using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// The README's main command as a test: <c>samples/local-mesh/run.sh --once</c> builds the control plane,
/// sidecars, CLI and sample app in Release, starts the whole mesh on loopback, makes the four calls of
/// issue 5 and prints each outcome. Driving the script itself (rather than the same processes from C#)
/// keeps the test and the command people run from drifting apart.
/// </summary>
public sealed partial class LocalMeshScenarioTests
{
    private static readonly TimeSpan Budget = TimeSpan.FromMinutes(12);

    /// <summary>Each call, the outcome it must have, and what the line must name as the deciding rule.</summary>
    private static readonly (string What, string Outcome, string DecidedBy)[] Expected =
    [
        ("store creates a charge in billing (POST /charges)", "allowed (201", "by AuthorizationPolicy shop/billing-charges"),
        ("reporting tries to create a charge in billing (POST /charges)", "denied (403", "only AuthorizationPolicy shop/billing-charges"),
        ("billing reaches payments.example.test:443", "allowed (200", "by EgressPolicy shop/payments-api"),
        ("store tries to reach payments.example.test:443", "denied", "REGISTRY_ONLY"),
    ];

    [Fact]
    public async Task Run_once_makes_every_call_and_each_outcome_is_the_expected_one()
    {
        var (exitCode, output) = await RunScriptAsync();
        Assert.True(exitCode is 0 or 3, $"run.sh --once exited {exitCode}:\n{output}");
        Assert.Contains("the mesh is up:", output, StringComparison.Ordinal);

        var outcomes = OutcomeLine().Matches(output).ToList();
        Assert.Equal(Expected.Length, outcomes.Count);
        var pending = new List<string>();
        for (var i = 0; i < Expected.Length; i++)
        {
            var (what, outcome, decidedBy) = Expected[i];
            var line = outcomes[i];
            Assert.Equal(what, line.Groups["what"].Value);
            switch (line.Groups["verdict"].Value)
            {
                case "ok":
                    Assert.StartsWith(outcome, line.Groups["rest"].Value, StringComparison.Ordinal);
                    Assert.Contains(decidedBy, line.Groups["rest"].Value, StringComparison.Ordinal);
                    break;
                case "NOT ENFORCED YET":
                    Assert.Matches(@"\(waits for branch (authz2|egress|wiring)\)$", line.Groups["rest"].Value);
                    pending.Add(line.Value.Trim());
                    break;
                default:
                    Assert.Fail($"unexpected outcome: {line.Value.Trim()}\n{output}");
                    break;
            }
        }

        // Every policy is enforced now: an outcome the script reports as not enforced is a failure.
        Assert.True(pending.Count == 0, "outcomes not enforced:\n" + string.Join('\n', pending));
        Assert.Equal(0, exitCode);
        Assert.Contains("4 of 4 outcomes as expected", output, StringComparison.Ordinal);
    }

    private static async Task<(int ExitCode, string Output)> RunScriptAsync()
    {
        var deadline = DateTime.UtcNow + Budget;
        while (true)
        {
            var (exitCode, output) = await RunOnceAsync(deadline);
            // 4: a port is taken, most likely by someone else's local mesh on this shared machine; it frees up.
            if (exitCode != 4 || DateTime.UtcNow > deadline - TimeSpan.FromMinutes(2))
            {
                return (exitCode, output);
            }

            await Task.Delay(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
        }
    }

    private static async Task<(int ExitCode, string Output)> RunOnceAsync(DateTime deadline)
    {
        var start = new ProcessStartInfo("bash", [Path.Combine(RepoPaths.Root, "samples", "local-mesh", "run.sh"), "--once"])
        {
            WorkingDirectory = RepoPaths.Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var output = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Append(output, e.Data);
        process.ErrorDataReceived += (_, e) => Append(output, e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(deadline - DateTime.UtcNow);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            await StopAsync(process);
            return (-1, $"run.sh did not finish within {Budget}:\n{output}");
        }

        process.WaitForExit(); // drains the redirected streams
        lock (output)
        {
            return (process.ExitCode, output.ToString());
        }
    }

    /// <summary>SIGTERM first, so the script's trap stops every process it started and restores /etc/hosts; then the whole tree.</summary>
    private static async Task StopAsync(Process process)
    {
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(grace.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
        }
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            output.Append(line).Append('\n');
        }
    }

    [GeneratedRegex(@"^  \[(?<verdict>ok|NOT ENFORCED YET|UNEXPECTED)\] (?<what>[^:]+(?::443)?): (?<rest>.*)$", RegexOptions.Multiline)]
    private static partial Regex OutcomeLine();
}
