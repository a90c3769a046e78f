using System.Globalization;
using System.Runtime.InteropServices;
using MeshProxy.Metrics.Internal;

namespace MeshProxy.Metrics.Runtime;

/// <summary>
/// The standard process_* metrics every Prometheus client exports, read from /proc on Linux once per
/// scrape. On other systems nothing is registered (the proxy runs on Linux; /proc is the contract).
/// </summary>
public static class ProcessMetrics
{
    /// <summary>Registers the process metrics; returns false where /proc/self is not available.</summary>
    public static bool Register(MetricsRegistry registry) => Register(registry, "/proc");

    internal static bool Register(MetricsRegistry registry, string procRoot)
    {
        ArgumentNullException.ThrowIfNull(registry);
        if (!OperatingSystem.IsLinux() || !File.Exists(Path.Combine(procRoot, "self", "stat")))
        {
            return false;
        }

        var reader = new ProcReader(procRoot);
        registry.RegisterPreparer(reader);
        registry.CreateCallbackCounter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", () => reader.Current.CpuSeconds);
        registry.CreateCallbackGauge("process_resident_memory_bytes", "Resident memory size in bytes.", () => reader.Current.ResidentBytes);
        registry.CreateCallbackGauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", () => reader.Current.VirtualBytes);
        registry.CreateCallbackGauge("process_open_fds", "Number of open file descriptors.", () => reader.Current.OpenFds);
        registry.CreateCallbackGauge("process_max_fds", "Maximum number of open file descriptors.", () => reader.Current.MaxFds);
        registry.CreateCallbackGauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", () => reader.StartTimeSeconds);
        return true;
    }
}

/// <summary>One reading of /proc/self; a value that could not be read is NaN.</summary>
internal sealed record ProcSnapshot(double CpuSeconds, double ResidentBytes, double VirtualBytes, double OpenFds, double MaxFds)
{
    public static readonly ProcSnapshot Empty = new(double.NaN, double.NaN, double.NaN, double.NaN, double.NaN);
}

internal sealed class ProcReader : IScrapePreparer
{
    private const int ScClkTck = 2;
    private readonly string _root;
    private readonly double _ticksPerSecond;
    private ProcSnapshot _current = ProcSnapshot.Empty;

    public ProcReader(string root)
    {
        _root = root;
        var ticks = SysConf(ScClkTck);
        _ticksPerSecond = ticks > 0 ? ticks : 100;
        StartTimeSeconds = ReadStartTime();
    }

    public ProcSnapshot Current => Volatile.Read(ref _current);

    public double StartTimeSeconds { get; }

    public void PrepareForScrape() => Volatile.Write(ref _current, Read());

    internal ProcSnapshot Read()
    {
        double cpu = double.NaN, rss = double.NaN, vsize = double.NaN;
        var stat = StatFields();
        if (stat is not null)
        {
            // Fields after "(comm) ": index 0 is field 3 (state); utime is field 14, stime 15, vsize 23, rss 24.
            cpu = (ParseLong(stat, 14) + ParseLong(stat, 15)) / _ticksPerSecond;
            vsize = ParseLong(stat, 23);
            rss = ParseLong(stat, 24) * (double)Environment.SystemPageSize;
        }

        return new ProcSnapshot(cpu, rss, vsize, CountOpenFds(), ReadMaxFds());
    }

    private string[]? StatFields()
    {
        var text = TryRead(Path.Combine(_root, "self", "stat"));

        // The command name may hold spaces and parentheses; the fields start after the last ')'.
        var close = text?.LastIndexOf(')') ?? -1;
        return close < 0 ? null : text![(close + 2)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    private static double ParseLong(string[] fieldsFromState, int fieldNumber)
    {
        var index = fieldNumber - 3;
        return index < fieldsFromState.Length && long.TryParse(fieldsFromState[index], NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
            ? value
            : double.NaN;
    }

    private double ReadStartTime()
    {
        var stat = StatFields();
        var bootTime = double.NaN;
        var procStat = TryRead(Path.Combine(_root, "stat"));
        if (procStat is not null)
        {
            foreach (var line in procStat.Split('\n'))
            {
                if (line.StartsWith("btime ", StringComparison.Ordinal) &&
                    long.TryParse(line.AsSpan(6).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var btime))
                {
                    bootTime = btime;
                }
            }
        }

        return stat is null ? double.NaN : bootTime + (ParseLong(stat, 22) / _ticksPerSecond);
    }

    private double CountOpenFds()
    {
        try
        {
            var count = 0;
            foreach (var _ in Directory.EnumerateFileSystemEntries(Path.Combine(_root, "self", "fd")))
            {
                count++;
            }

            return count;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return double.NaN;
        }
    }

    private double ReadMaxFds()
    {
        var text = TryRead(Path.Combine(_root, "self", "limits"));
        if (text is null)
        {
            return double.NaN;
        }

        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("Max open files", StringComparison.Ordinal))
            {
                continue;
            }

            var parts = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 0)
            {
                return parts[0] == "unlimited"
                    ? double.PositiveInfinity
                    : long.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var soft) ? soft : double.NaN;
            }
        }

        return double.NaN;
    }

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    // USER_HZ is almost always 100, but the kernel's answer costs nothing and is never wrong.
    [DllImport("libc", EntryPoint = "sysconf")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern long SysConf(int name);
}
