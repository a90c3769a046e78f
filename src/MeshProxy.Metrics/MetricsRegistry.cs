using System.Buffers;
using MeshProxy.Metrics.Internal;

namespace MeshProxy.Metrics;

/// <summary>Settings of a <see cref="MetricsRegistry"/>.</summary>
public sealed record MetricsOptions
{
    /// <summary>Series a labeled family may hold; new label sets past it are dropped and counted.</summary>
    public int MaxSeriesPerFamily { get; init; } = 10_000;
}

/// <summary>
/// Holds metric families and writes them in the Prometheus text format 0.0.4, sorted by family name.
/// Also exports <c>meshproxy_metrics_series_dropped_total{family}</c>: recordings refused because a family
/// reached its series limit.
/// </summary>
public sealed class MetricsRegistry
{
    /// <summary>The Content-Type of <see cref="WriteTo"/>'s output.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private const string DroppedName = "meshproxy_metrics_series_dropped_total";
    private const int FlushThreshold = 16 * 1024;

    private readonly Lock _registrationLock = new();
    private readonly SortedDictionary<string, IMetricFamily> _families = new(StringComparer.Ordinal);
    private readonly List<IScrapePreparer> _preparers = [];
    private readonly List<(string Family, Func<long> Dropped)> _capacities = [];
    private IMetricFamily[] _ordered = [];
    private IScrapePreparer[] _orderedPreparers = [];

    public MetricsRegistry(MetricsOptions? options = null)
    {
        Options = options ?? new MetricsOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Options.MaxSeriesPerFamily, nameof(options));
        Register(new DroppedSeriesFamily(this));
    }

    public MetricsOptions Options { get; }

    public Counter CreateCounter(string name, string help) =>
        CreateCounterFamily<NoLabels>(name, help, []).WithLabels(default);

    public CounterFamily<TLabels> CreateCounterFamily<TLabels>(string name, string help, IReadOnlyList<string> labelNames, int? maxSeries = null)
        where TLabels : struct, ILabelSet
    {
        ValidateCounterName(name);
        var family = new CounterFamily<TLabels>(name, help ?? string.Empty, CheckLabels<TLabels>(labelNames, false), MaxSeries(maxSeries));
        Register(family);
        TrackCapacity(family.Series);
        return family;
    }

    public Gauge CreateGauge(string name, string help) =>
        CreateGaugeFamily<NoLabels>(name, help, []).WithLabels(default);

    public GaugeFamily<TLabels> CreateGaugeFamily<TLabels>(string name, string help, IReadOnlyList<string> labelNames, int? maxSeries = null)
        where TLabels : struct, ILabelSet
    {
        MetricNames.ValidateMetricName(name, nameof(name));
        var family = new GaugeFamily<TLabels>(name, help ?? string.Empty, CheckLabels<TLabels>(labelNames, false), MaxSeries(maxSeries));
        Register(family);
        TrackCapacity(family.Series);
        return family;
    }

    public Histogram CreateHistogram(string name, string help, IReadOnlyList<double> buckets) =>
        CreateHistogramFamily<NoLabels>(name, help, [], buckets).WithLabels(default);

    public HistogramFamily<TLabels> CreateHistogramFamily<TLabels>(string name, string help, IReadOnlyList<string> labelNames, IReadOnlyList<double> buckets, int? maxSeries = null)
        where TLabels : struct, ILabelSet
    {
        MetricNames.ValidateMetricName(name, nameof(name));
        var bounds = MetricNames.ValidateBuckets(buckets, nameof(buckets));
        var family = new HistogramFamily<TLabels>(name, help ?? string.Empty, CheckLabels<TLabels>(labelNames, true), bounds, MaxSeries(maxSeries));
        Register(family);
        TrackCapacity(family.Series);
        return family;
    }

    /// <summary>A gauge read from <paramref name="read"/> at scrape time. A callback that throws loses its sample for that scrape.</summary>
    public void CreateCallbackGauge(string name, string help, Func<double> read) =>
        CreateCallbackGauge(name, help, [], [new CallbackSample([], read)]);

    public void CreateCallbackGauge(string name, string help, IReadOnlyList<string> labelNames, IReadOnlyList<CallbackSample> samples)
    {
        MetricNames.ValidateMetricName(name, nameof(name));
        MetricNames.ValidateLabelNames(labelNames, false, nameof(labelNames));
        Register(new CallbackFamily(name, help ?? string.Empty, "gauge", [.. labelNames], samples));
    }

    /// <summary>A counter read from <paramref name="read"/> at scrape time; the source must never decrease.</summary>
    public void CreateCallbackCounter(string name, string help, Func<double> read) =>
        CreateCallbackCounter(name, help, [], [new CallbackSample([], read)]);

    public void CreateCallbackCounter(string name, string help, IReadOnlyList<string> labelNames, IReadOnlyList<CallbackSample> samples)
    {
        ValidateCounterName(name);
        MetricNames.ValidateLabelNames(labelNames, false, nameof(labelNames));
        Register(new CallbackFamily(name, help ?? string.Empty, "counter", [.. labelNames], samples));
    }

    /// <summary>Writes the whole exposition. Recording goes on while a scrape runs; concurrent scrapes are safe.</summary>
    public void WriteTo(IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var writer = new ExpositionWriter(output);
        foreach (var preparer in Volatile.Read(ref _orderedPreparers))
        {
            preparer.PrepareForScrape();
        }

        foreach (var family in Volatile.Read(ref _ordered))
        {
            family.Write(writer);
        }
    }

    /// <summary>Writes the exposition to <paramref name="stream"/> in chunks of about 16 KiB.</summary>
    public async Task WriteToAsync(Stream stream, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var buffer = new ArrayBufferWriter<byte>(FlushThreshold * 2);
        var writer = new ExpositionWriter(buffer);
        foreach (var preparer in Volatile.Read(ref _orderedPreparers))
        {
            preparer.PrepareForScrape();
        }

        foreach (var family in Volatile.Read(ref _ordered))
        {
            family.Write(writer);
            if (buffer.WrittenCount >= FlushThreshold)
            {
                await stream.WriteAsync(buffer.WrittenMemory, cancellationToken);
                buffer.ResetWrittenCount();
            }
        }

        if (buffer.WrittenCount > 0)
        {
            await stream.WriteAsync(buffer.WrittenMemory, cancellationToken);
        }
    }

    internal void Register(IMetricFamily family)
    {
        lock (_registrationLock)
        {
            if (!_families.TryAdd(family.Name, family))
            {
                throw new ArgumentException($"A metric family named '{family.Name}' is already registered.", nameof(family));
            }

            _ordered = [.. _families.Values];
        }
    }

    internal void RegisterPreparer(IScrapePreparer preparer)
    {
        lock (_registrationLock)
        {
            _preparers.Add(preparer);
            _orderedPreparers = [.. _preparers];
        }
    }

    internal void TrackCapacity<TKey, TSeries>(SeriesMap<TKey, TSeries> series)
        where TKey : struct, ILabelSet
        where TSeries : class
    {
        // Unlabeled families hold exactly one series and can never overflow.
        if (series.LabelNames.Count == 0)
        {
            return;
        }

        lock (_registrationLock)
        {
            _capacities.Add((series.Name, () => series.Dropped));
        }
    }

    internal int MaxSeries(int? requested)
    {
        var max = requested ?? Options.MaxSeriesPerFamily;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(max, "maxSeries");
        return max;
    }

    internal static string[] CheckLabels<TLabels>(IReadOnlyList<string> labelNames, bool isHistogram)
        where TLabels : struct, ILabelSet
    {
        MetricNames.ValidateLabelNames(labelNames, isHistogram, nameof(labelNames));
        var count = default(TLabels).Count;
        if (count != labelNames.Count)
        {
            throw new ArgumentException($"{typeof(TLabels).Name} carries {count} values but {labelNames.Count} label names were given.", nameof(labelNames));
        }

        return [.. labelNames];
    }

    internal static void ValidateCounterName(string name)
    {
        MetricNames.ValidateMetricName(name, nameof(name));
        if (!name.EndsWith("_total", StringComparison.Ordinal))
        {
            throw new ArgumentException($"Counter name '{name}' must end in '_total'.", nameof(name));
        }
    }

    private (string Family, Func<long> Dropped)[] Capacities()
    {
        lock (_registrationLock)
        {
            return [.. _capacities];
        }
    }

    private sealed class DroppedSeriesFamily(MetricsRegistry registry) : IMetricFamily
    {
        private static readonly byte[] Header = ExpositionWriter.EncodeHeader(
            DroppedName,
            "Recordings dropped because their metric family had reached its maximum number of series.",
            "counter");

        private static readonly byte[] NameBytes = ExpositionWriter.Ascii(DroppedName);
        private static readonly string[] LabelNames = ["family"];

        public string Name => DroppedName;

        public void Write(ExpositionWriter writer)
        {
            var capacities = registry.Capacities();
            Array.Sort(capacities, static (a, b) => string.CompareOrdinal(a.Family, b.Family));
            writer.Write(Header);
            foreach (var (family, dropped) in capacities)
            {
                writer.Write(NameBytes);
                HistogramWriter.WriteLabels(writer, ExpositionWriter.EncodeLabelBlock(LabelNames, [family]));
                writer.WriteLong(dropped());
                writer.Write((byte)'\n');
            }
        }
    }
}

/// <summary>The key of an unlabeled family's single series.</summary>
internal readonly struct NoLabels : ILabelSet
{
    public int Count => 0;

    public string GetValue(int index) => throw new ArgumentOutOfRangeException(nameof(index));
}
