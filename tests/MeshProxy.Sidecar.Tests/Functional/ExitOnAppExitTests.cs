using System.Diagnostics;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>
/// A classic sidecar in a Job's pod with MESHPROXY_EXIT_ON_APP_EXIT: the real sidecar process, as uid 1337, in a
/// PID namespace of its own (a pod with shareProcessNamespace) whose pid 1 plays the pause process, beside an
/// "app" in a mount namespace of its own (a container) running as another user. The sidecar must outlive a
/// process of its own container (a postStart hook), keep running while the app runs, and exit 0 soon after the
/// app has gone.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ExitOnAppExitTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_sidecar_exits_0_soon_after_the_app_exits_and_not_before()
    {
        Assert.SkipUnless(Environment.UserName == "root", "needs root: PID and mount namespaces, and running as uid 1337");
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
        var config = new MeshYaml("batch", 8080, drain: "5s").WriteTo(dir);
        File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101); // the sidecar, as uid 1337, reads its config here
        var hook = Path.Combine(dir, "hook");
        var go = Path.Combine(dir, "go");
        var stop = Path.Combine(dir, "stop");
        foreach (var fifo in new[] { hook, go, stop })
        {
            Assert.Equal(0, MkFifo(fifo, 0b110_110_110));
        }

        // pid 1 spawns nothing while the others run (pause does not): it blocks on a FIFO, not in a sleep loop.
        var script = $"""
            setpriv --reuid 1337 --regid 1337 --clear-groups env HOME=/tmp DOTNET_CLI_TELEMETRY_OPTOUT=1 {string.Join(' ', RepoPaths.Sidecar("--config", config))} &
            sidecar=$!
            read line < {hook}
            echo hook-start
            setpriv --reuid 1337 --regid 1337 --clear-groups sleep 2
            echo hook-done
            read line < {go}
            unshare --mount setpriv --reuid 4242 --regid 4242 --clear-groups sh -c 'echo app-started; read line < {stop}; echo app-exiting' &
            wait $sidecar
            echo sidecar-exit=$?
            """;
        await using var pod = ExternalProcess.Start("unshare", ["--pid", "--fork", "--mount-proc", "sh", "-c", script],
            new Dictionary<string, string> { ["MESHPROXY_EXIT_ON_APP_EXIT"] = "true", ["Logging__Console__FormatterName"] = "simple" });

        var timeout = TimeSpan.FromSeconds(60);
        await pod.WaitForLineAsync("Exit on app exit: watching", timeout);

        // A process of the sidecar's own container (uid 1337, its mount namespace) comes and goes while it watches.
        await Signal(hook);
        await pod.WaitForLineAsync("hook-done", timeout);
        await Task.Delay(1500, Ct); // three scans with the hook gone and no app yet
        Assert.DoesNotContain("App processes seen", pod.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("sidecar-exit", pod.Output, StringComparison.Ordinal);

        await Signal(go);
        await pod.WaitForLineAsync("app-started", timeout);
        var seen = await pod.WaitForLineAsync("App processes seen", timeout);
        Assert.Contains("(sh)", seen, StringComparison.Ordinal);
        Assert.DoesNotContain("(sleep)", seen, StringComparison.Ordinal);
        await Task.Delay(1500, Ct);
        Assert.DoesNotContain("sidecar-exit", pod.Output, StringComparison.Ordinal);

        var appExit = Stopwatch.StartNew();
        await Signal(stop);
        await pod.WaitForLineAsync("app-exiting", timeout);
        await pod.WaitForLineAsync("sidecar-exit=", TimeSpan.FromSeconds(15));
        Assert.True(appExit.Elapsed < TimeSpan.FromSeconds(5), $"the sidecar took {appExit.Elapsed} to exit after the app");
        Assert.Contains("sidecar-exit=0", pod.Output, StringComparison.Ordinal);
        Assert.Contains("The app's processes have all exited", pod.Output, StringComparison.Ordinal);
        Assert.Contains("outbound serves for 0s more", pod.Output, StringComparison.Ordinal); // as /quitquitquit: no drain period
        Assert.Equal(0, await pod.WaitForExitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task A_bad_setting_in_the_environment_stops_the_sidecar_at_start_up_with_a_clear_error()
    {
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
        var config = new MeshYaml("batch", 8080).WriteTo(dir);
        var command = RepoPaths.Sidecar("--config", config);
        await using var process = ExternalProcess.Start(command[0], command[1..],
            new Dictionary<string, string> { ["MESHPROXY_EXIT_ON_APP_EXIT"] = "sometimes" });
        Assert.Equal(1, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("MESHPROXY_EXIT_ON_APP_EXIT: 'sometimes' must be true or false", process.Output, StringComparison.Ordinal);
    }

    /// <summary>Opening a FIFO for writing waits for its reader; bounded, so a script that never reads fails the test.</summary>
    private static Task Signal(string fifo) =>
        Task.Run(() => File.WriteAllText(fifo, "go\n"), Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int MkFifo(string path, int mode);
}
