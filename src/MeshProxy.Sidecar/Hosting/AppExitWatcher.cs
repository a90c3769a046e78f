using System.Globalization;
using MeshProxy.Config.Resources;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Hosting;

/// <summary>
/// For a classic sidecar in a Job's pod: stops the sidecar once the app's processes have all exited, as if the
/// app had called /quitquitquit. The injector turns this on together with <c>shareProcessNamespace</c>, so the
/// sidecar sees every container's processes in /proc. A process is the app's unless it is pid 1 (the pod's
/// pause process), this process, or in this container: every container has its own mount namespace, and
/// whatever runs in ours (a postStart hook, a <c>kubectl exec</c>) shares it. As uid 1337 the sidecar cannot
/// read other users' namespace links; a process it may not inspect is therefore another container's.
/// </summary>
/// <remarks>
/// The app counts as gone only after it has been seen: a sidecar starts before its app, and the app may start
/// late. A process that lives less than one scan interval can be missed; a Job's container does not.
/// </remarks>
internal sealed class AppExitWatcher(SidecarLifecycle lifecycle, TimeProvider time, ILogger<AppExitWatcher> logger) : BackgroundService
{
    public const string EnvironmentVariable = SidecarEnvironment.ExitOnAppExit;

    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);

    private const string Proc = "/proc";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var own = MountNamespace(Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        if (own is null)
        {
            logger.AppExitWatchUnavailable("cannot read /proc/self/ns/mnt");
            return;
        }

        logger.AppExitWatchStarted();
        var seen = false;
        using var timer = new PeriodicTimer(Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            var app = AppProcesses(own);
            if (app.Count > 0)
            {
                if (!seen)
                {
                    seen = true;
                    if (logger.IsEnabled(LogLevel.Information))
                    {
                        logger.AppSeen(string.Join(", ", app));
                    }
                }
            }
            else if (seen)
            {
                logger.AppGone();
                lifecycle.RequestQuit();
                return;
            }
        }
    }

    /// <summary>"pid (name)" of every live process that is neither the pause process nor this container's.</summary>
    private static List<string> AppProcesses(string ownMountNamespace)
    {
        var app = new List<string>();
        var self = Environment.ProcessId;
        foreach (var dir in Directory.EnumerateDirectories(Proc))
        {
            var name = Path.GetFileName(dir);
            if (!int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid == 1 || pid == self)
            {
                continue;
            }

            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (IOException)
            {
                continue; // exited while we looked
            }

            // "pid (comm) state ...": comm may itself hold spaces and parentheses, so the state follows the last ')'.
            var close = stat.LastIndexOf(')');
            var state = close > 0 && close + 2 < stat.Length ? stat[close + 2] : '?';
            if (state is 'Z' or 'X' or 'x')
            {
                continue; // exited, not yet reaped
            }

            var ns = MountNamespace(name);
            if (ns == ownMountNamespace)
            {
                continue;
            }

            if (ns is null && !Directory.Exists(dir))
            {
                continue;
            }

            var comm = close > 0 ? stat[(stat.IndexOf('(', StringComparison.Ordinal) + 1)..close] : "?";
            app.Add($"{name} ({comm})");
        }

        return app;
    }

    /// <summary>The process's mount namespace ("mnt:[4026531840]"), or null when it may not be read or has gone.</summary>
    private static string? MountNamespace(string pid)
    {
        try
        {
            return new FileInfo(Path.Combine(Proc, pid, "ns", "mnt")).LinkTarget;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

internal static partial class AppExitWatcherLog
{
    [LoggerMessage(EventId = 810, Level = LogLevel.Information, Message = "Exit on app exit: watching the pod's processes for the app's")]
    public static partial void AppExitWatchStarted(this ILogger logger);

    [LoggerMessage(EventId = 811, Level = LogLevel.Information, Message = "App processes seen: {Processes}; the sidecar stops when they have all exited")]
    public static partial void AppSeen(this ILogger logger, string processes);

    [LoggerMessage(EventId = 812, Level = LogLevel.Information, Message = "The app's processes have all exited: stopping as on /quitquitquit")]
    public static partial void AppGone(this ILogger logger);

    [LoggerMessage(EventId = 813, Level = LogLevel.Warning, Message = "Exit on app exit is on but cannot work here ({Reason}); the sidecar runs until it is stopped")]
    public static partial void AppExitWatchUnavailable(this ILogger logger, string reason);
}
