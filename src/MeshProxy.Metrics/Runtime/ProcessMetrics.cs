using System.Globalization;
using Prometheus;

namespace MeshProxy.Metrics.Runtime;

/// <summary>
/// The standard process_* metrics every Prometheus client exports. prometheus-net's <see cref="DotNetStats"/>
/// gives process_cpu_seconds_total, process_virtual_memory_bytes and process_start_time_seconds (and its own
/// process_working_set_bytes, process_open_handles, dotnet_collection_count_total, ...); the three it does not
/// have under the standard names, process_resident_memory_bytes, process_open_fds and process_max_fds (which
/// dashboards and alerts use), are read here from /proc on Linux once per scrape.
/// </summary>
public static class ProcessMetrics
{
    /// <summary>Registers the process metrics; returns false where /proc/self is not available (then only prometheus-net's).</summary>
    public static bool Register(MetricsRegistry registry) => Register(registry, "/proc");

    internal static bool Register(MetricsRegistry registry, string procRoot)
    {
        ArgumentNullException.ThrowIfNull(registry);
        DotNetStats.Register(registry.Collectors);
        if (!OperatingSystem.IsLinux() || !File.Exists(Path.Combine(procRoot, "self", "stat")))
        {
            return false;
        }

        var reader = new ProcReader(procRoot);
        registry.BeforeScrape(reader.PrepareForScrape);
        registry.CallbackGauge("process_resident_memory_bytes", "Resident memory size in bytes.", () => reader.Current.ResidentBytes);
        registry.CallbackGauge("process_open_fds", "Number of open file descriptors.", () => reader.Current.OpenFds);
        registry.CallbackGauge("process_max_fds", "Maximum number of open file descriptors.", () => reader.Current.MaxFds);
        return true;
    }
}

/// <summary>One reading of /proc/self; a value that could not be read is NaN.</summary>
internal sealed record ProcSnapshot(double ResidentBytes, double OpenFds, double MaxFds)
{
    public static readonly ProcSnapshot Empty = new(double.NaN, double.NaN, double.NaN);
}

internal sealed class ProcReader(string root)
{
    private readonly string _root = root;
    private ProcSnapshot _current = ProcSnapshot.Empty;

    public ProcSnapshot Current => Volatile.Read(ref _current);

    public void PrepareForScrape() => Volatile.Write(ref _current, Read());

    internal ProcSnapshot Read()
    {
        // The command name may hold spaces and parentheses; the fields start after the last ')'.
        // Index 0 is then field 3 (state); rss (in pages) is field 24.
        var text = TryRead(Path.Combine(_root, "self", "stat"));
        var close = text?.LastIndexOf(')') ?? -1;
        var fields = close < 0 ? [] : text![(close + 2)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var rss = fields.Length > 24 - 3 && long.TryParse(fields[24 - 3], NumberStyles.Integer, CultureInfo.InvariantCulture, out var pages)
            ? pages * (double)Environment.SystemPageSize
            : double.NaN;
        return new ProcSnapshot(rss, CountOpenFds(), ReadMaxFds());
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
}
