using MeshProxy.Metrics.Internal;

namespace MeshProxy.Metrics;

/// <summary>Counters that share a name and label names; one <see cref="Counter"/> per label set.</summary>
public sealed class CounterFamily<TLabels> : IMetricFamily
    where TLabels : struct, ILabelSet
{
    private readonly SeriesMap<TLabels, Counter> _series;
    private readonly byte[] _header;
    private readonly byte[] _name;

    internal CounterFamily(string name, string help, string[] labelNames, int maxSeries)
    {
        Name = name;
        _header = ExpositionWriter.EncodeHeader(name, help, "counter");
        _name = ExpositionWriter.Ascii(name);
        _series = new SeriesMap<TLabels, Counter>(name, labelNames, maxSeries, static () => new Counter(), new Counter());
    }

    public string Name { get; }

    internal SeriesMap<TLabels, Counter> Series => _series;

    /// <summary>The series for <paramref name="labels"/>; past the family's series limit, a sink that is never exported.</summary>
    public Counter WithLabels(in TLabels labels) => _series.GetOrAdd(labels);

    void IMetricFamily.Write(ExpositionWriter writer)
    {
        var entries = _series.Snapshot();
        if (entries.IsEmpty)
        {
            return;
        }

        writer.Write(_header);
        foreach (var entry in entries)
        {
            writer.Write(_name);
            HistogramWriter.WriteLabels(writer, entry.LabelBlock);
            writer.WriteLong(entry.Series.Value);
            writer.Write((byte)'\n');
        }
    }
}

/// <summary>Gauges that share a name and label names; one <see cref="Gauge"/> per label set.</summary>
public sealed class GaugeFamily<TLabels> : IMetricFamily
    where TLabels : struct, ILabelSet
{
    private readonly SeriesMap<TLabels, Gauge> _series;
    private readonly byte[] _header;
    private readonly byte[] _name;

    internal GaugeFamily(string name, string help, string[] labelNames, int maxSeries)
    {
        Name = name;
        _header = ExpositionWriter.EncodeHeader(name, help, "gauge");
        _name = ExpositionWriter.Ascii(name);
        _series = new SeriesMap<TLabels, Gauge>(name, labelNames, maxSeries, static () => new Gauge(), new Gauge());
    }

    public string Name { get; }

    internal SeriesMap<TLabels, Gauge> Series => _series;

    /// <summary>The series for <paramref name="labels"/>; past the family's series limit, a sink that is never exported.</summary>
    public Gauge WithLabels(in TLabels labels) => _series.GetOrAdd(labels);

    void IMetricFamily.Write(ExpositionWriter writer)
    {
        var entries = _series.Snapshot();
        if (entries.IsEmpty)
        {
            return;
        }

        writer.Write(_header);
        foreach (var entry in entries)
        {
            writer.Write(_name);
            HistogramWriter.WriteLabels(writer, entry.LabelBlock);
            writer.WriteDouble(entry.Series.Value);
            writer.Write((byte)'\n');
        }
    }
}

/// <summary>Histograms that share a name, label names and bucket bounds; one <see cref="Histogram"/> per label set.</summary>
public sealed class HistogramFamily<TLabels> : IMetricFamily
    where TLabels : struct, ILabelSet
{
    private readonly SeriesMap<TLabels, Histogram> _series;
    private readonly byte[] _header;
    private readonly HistogramNames _names;

    internal HistogramFamily(string name, string help, string[] labelNames, double[] bounds, int maxSeries)
    {
        Name = name;
        _header = ExpositionWriter.EncodeHeader(name, help, "histogram");
        _names = new HistogramNames(name, bounds);
        _series = new SeriesMap<TLabels, Histogram>(name, labelNames, maxSeries, () => new Histogram(bounds), new Histogram(bounds));
    }

    public string Name { get; }

    internal SeriesMap<TLabels, Histogram> Series => _series;

    /// <summary>The series for <paramref name="labels"/>; past the family's series limit, a sink that is never exported.</summary>
    public Histogram WithLabels(in TLabels labels) => _series.GetOrAdd(labels);

    void IMetricFamily.Write(ExpositionWriter writer)
    {
        var entries = _series.Snapshot();
        if (entries.IsEmpty)
        {
            return;
        }

        writer.Write(_header);
        foreach (var entry in entries)
        {
            entry.Series.Write(writer, _names, entry.LabelBlock);
        }
    }
}

/// <summary>One sample of a callback metric: its label values and the function read at scrape time.</summary>
public sealed record CallbackSample(IReadOnlyList<string> LabelValues, Func<double> Read);

/// <summary>A gauge or counter whose samples are read from callbacks when Prometheus scrapes.</summary>
internal sealed class CallbackFamily : IMetricFamily
{
    private readonly byte[] _header;
    private readonly byte[] _name;
    private readonly (byte[] LabelBlock, Func<double> Read)[] _samples;

    public CallbackFamily(string name, string help, string type, string[] labelNames, IReadOnlyList<CallbackSample> samples)
    {
        Name = name;
        _header = ExpositionWriter.EncodeHeader(name, help, type);
        _name = ExpositionWriter.Ascii(name);
        _samples = new (byte[], Func<double>)[samples.Count];
        for (var i = 0; i < samples.Count; i++)
        {
            var sample = samples[i] ?? throw new ArgumentException("A callback sample is null.", nameof(samples));
            ArgumentNullException.ThrowIfNull(sample.Read, nameof(samples));
            if (sample.LabelValues.Count != labelNames.Length)
            {
                throw new ArgumentException($"Callback metric '{name}' has {labelNames.Length} labels but a sample has {sample.LabelValues.Count} values.", nameof(samples));
            }

            _samples[i] = (ExpositionWriter.EncodeLabelBlock(labelNames, [.. sample.LabelValues.Select(v => v ?? string.Empty)]), sample.Read);
        }

        Array.Sort(_samples, static (a, b) => a.LabelBlock.AsSpan().SequenceCompareTo(b.LabelBlock));
    }

    public string Name { get; }

    public void Write(ExpositionWriter writer)
    {
        writer.Write(_header);
        foreach (var (labelBlock, read) in _samples)
        {
            double value;
            try
            {
                value = read();
            }
            catch (Exception)
            {
                // A failing source loses its sample for this scrape; the rest of the exposition still goes out.
                continue;
            }

            writer.Write(_name);
            HistogramWriter.WriteLabels(writer, labelBlock);
            writer.WriteDouble(value);
            writer.Write((byte)'\n');
        }
    }
}
