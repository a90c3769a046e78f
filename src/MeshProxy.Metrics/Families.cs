using MeshProxy.Metrics.Internal;

namespace MeshProxy.Metrics;

/// <summary>
/// A family of single-value series (counters, gauges) that share a name and label names. The
/// derived families differ only in their series type and how one value is written.
/// </summary>
public abstract class ScalarFamily<TLabels, TSeries> : IMetricFamily
    where TLabels : struct, ILabelSet
    where TSeries : class
{
    private readonly SeriesMap<TLabels, TSeries> _series;
    private readonly byte[] _header;
    private readonly byte[] _name;

    private protected ScalarFamily(string name, string help, string type, string[] labelNames, int maxSeries, Func<TSeries> create)
    {
        Name = name;
        _header = ExpositionWriter.EncodeHeader(name, help, type);
        _name = ExpositionWriter.Ascii(name);
        _series = new SeriesMap<TLabels, TSeries>(name, labelNames, maxSeries, create, create());
    }

    public string Name { get; }

    internal SeriesMap<TLabels, TSeries> Series => _series;

    /// <summary>The series for <paramref name="labels"/>; past the family's series limit, a sink that is never exported.</summary>
    public TSeries WithLabels(in TLabels labels) => _series.GetOrAdd(labels);

    private protected abstract void WriteValue(ExpositionWriter writer, TSeries series);

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
            WriteValue(writer, entry.Series);
            writer.Write((byte)'\n');
        }
    }
}

/// <summary>Counters that share a name and label names; one <see cref="Counter"/> per label set.</summary>
public sealed class CounterFamily<TLabels> : ScalarFamily<TLabels, Counter>
    where TLabels : struct, ILabelSet
{
    internal CounterFamily(string name, string help, string[] labelNames, int maxSeries)
        : base(name, help, "counter", labelNames, maxSeries, static () => new Counter())
    {
    }

    private protected override void WriteValue(ExpositionWriter writer, Counter series) => writer.WriteLong(series.Value);
}

/// <summary>Gauges that share a name and label names; one <see cref="Gauge"/> per label set.</summary>
public sealed class GaugeFamily<TLabels> : ScalarFamily<TLabels, Gauge>
    where TLabels : struct, ILabelSet
{
    internal GaugeFamily(string name, string help, string[] labelNames, int maxSeries)
        : base(name, help, "gauge", labelNames, maxSeries, static () => new Gauge())
    {
    }

    private protected override void WriteValue(ExpositionWriter writer, Gauge series) => writer.WriteDouble(series.Value);
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
