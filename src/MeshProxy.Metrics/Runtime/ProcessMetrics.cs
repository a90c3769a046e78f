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

        // One callback reads /proc and sets all three gauges. prometheus-net runs its before-collect callbacks in no
        // defined order (a ConcurrentBag), so a reading taken in one callback and exported by another would lag a
        // scrape behind, and the first scrape would export nothing.
        var reader = new ProcReader(procRoot);
        var resident = registry.Factory.CreateGauge("process_resident_memory_bytes", "Resident memory size in bytes.", new GaugeConfiguration { SuppressInitialValue = true });
        var openFds = registry.Factory.CreateGauge("process_open_fds", "Number of open file descriptors.", new GaugeConfiguration { SuppressInitialValue = true });
        var maxFds = registry.Factory.CreateGauge("process_max_fds", "Maximum number of open file descriptors.", new GaugeConfiguration { SuppressInitialValue = true });
        registry.BeforeScrape(() =>
        {
            var reading = reader.Read();
            Export(resident, reading.ResidentBytes);
            Export(openFds, reading.OpenFds);
            Export(maxFds, reading.MaxFds);
        });
        return true;
    }

    // A value that could not be read is left out of the exposition rather than exported as NaN.
    private static void Export(Gauge gauge, double value)
    {
        if (double.IsNaN(value))
        {
            gauge.Unpublish();
            return;
        }

        gauge.Set(value);
        gauge.Publish();
    }
}

/// <summary>One reading of /proc/self; a value that could not be read is NaN.</summary>
internal sealed record ProcSnapshot(double ResidentBytes, double OpenFds, double MaxFds);

internal sealed class ProcReader(string root)
{
    private readonly string _root = root;
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
