using System.Collections.Concurrent;
using Prometheus;

namespace MeshProxy.Metrics.Internal;

/// <summary>
/// The series of one label group (several families that share labels, like Istio's four request metrics),
/// found by a struct key, each series holding the group's cached prometheus-net children. Lookup goes first to
/// a cache keyed by string identity (no character hashing), then to the map keyed by string value, which
/// decides what exists; only creating a series asks prometheus-net for children (and allocates). The number
/// of series is capped: past the cap a lookup returns a sink series whose children are never exported, and
/// counts a drop in <c>meshproxy_metrics_series_dropped_total{family}</c>.
/// </summary>
internal sealed class SeriesMap<TKey, TSeries>
    where TKey : struct, ILabelSet
    where TSeries : class
{
    private readonly ConcurrentDictionary<TKey, TSeries> _byIdentity = new(LabelIdentityComparer<TKey>.Instance);
    private readonly ConcurrentDictionary<TKey, TSeries> _byValue = new(LabelValueComparer<TKey>.Instance);
    private readonly Lock _createLock = new();
    private readonly int _labelCount;
    private readonly Func<string[], TSeries> _create;
    private readonly TSeries _sink;
    private readonly Counter.Child _dropped;
    private readonly int _maxSeries;
    private readonly int _maxIdentityEntries;
    private int _count;

    public SeriesMap(string name, int labelCount, int maxSeries, Func<string[], TSeries> create, TSeries sink, Counter.Child dropped)
    {
        Name = name;
        _labelCount = labelCount;
        _maxSeries = maxSeries;
        _create = create;
        _sink = sink;
        _dropped = dropped;

        // The identity cache may hold several keys per series (a config snapshot swap brings new string
        // instances for the same values); past this size it is cleared and refilled from the value map.
        _maxIdentityEntries = maxSeries * 2;
    }

    /// <summary>The name reported in the dropped-series counter.</summary>
    public string Name { get; }

    public int Count => Volatile.Read(ref _count);

    public TSeries GetOrAdd(in TKey key)
    {
        if (_byIdentity.TryGetValue(key, out var series))
        {
            return series;
        }

        return GetOrAddSlow(key);
    }

    private TSeries GetOrAddSlow(TKey key)
    {
        if (!_byValue.TryGetValue(key, out var series))
        {
            series = Volatile.Read(ref _count) >= _maxSeries ? null : Create(key);
            if (series is null)
            {
                _dropped.Inc();
                return _sink;
            }
        }

        if (_byIdentity.Count >= _maxIdentityEntries)
        {
            _byIdentity.Clear();
        }

        _byIdentity.TryAdd(key, series);
        return series;
    }

    private TSeries? Create(TKey key)
    {
        if (key.Count != _labelCount)
        {
            throw new ArgumentException($"Family '{Name}' has {_labelCount} labels but the key has {key.Count} values.", nameof(key));
        }

        lock (_createLock)
        {
            if (_byValue.TryGetValue(key, out var existing))
            {
                return existing;
            }

            if (_count >= _maxSeries)
            {
                return null;
            }

            var values = new string[_labelCount];
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = key.GetValue(i) ?? string.Empty;
            }

            var series = _create(values);
            _byValue[key] = series;
            Volatile.Write(ref _count, _count + 1);
            return series;
        }
    }
}
