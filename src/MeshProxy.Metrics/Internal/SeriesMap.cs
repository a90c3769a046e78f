using System.Collections.Concurrent;

namespace MeshProxy.Metrics.Internal;

/// <summary>
/// The series of one family (or of several families that share labels, like Istio's request metrics),
/// found by a struct key. Lookup goes first to a cache keyed by string identity (no character hashing),
/// then to the map keyed by string value, which decides what exists. The number of series is capped:
/// past the cap a lookup returns a sink series that is never exported and counts a drop.
/// </summary>
internal sealed class SeriesMap<TKey, TSeries>
    where TKey : struct, ILabelSet
    where TSeries : class
{
    private readonly ConcurrentDictionary<TKey, TSeries> _byIdentity = new(LabelIdentityComparer<TKey>.Instance);
    private readonly ConcurrentDictionary<TKey, TSeries> _byValue = new(LabelValueComparer<TKey>.Instance);
    private readonly List<SeriesEntry<TSeries>> _entries = [];
    private readonly Lock _createLock = new();
    private readonly string[] _labelNames;
    private readonly Func<TSeries> _factory;
    private readonly TSeries _sink;
    private readonly int _maxSeries;
    private readonly int _maxIdentityEntries;
    private int _count;
    private int _version;
    private SeriesEntry<TSeries>[] _sorted = [];
    private int _sortedVersion;
    private long _dropped;

    public SeriesMap(string name, string[] labelNames, int maxSeries, Func<TSeries> factory, TSeries sink)
    {
        Name = name;
        _labelNames = labelNames;
        _maxSeries = maxSeries;
        _factory = factory;
        _sink = sink;

        // The identity cache may hold several keys per series (a config snapshot swap brings new string
        // instances for the same values); past this size it is cleared and refilled from the value map.
        _maxIdentityEntries = maxSeries * 2;
    }

    /// <summary>The name reported in the dropped-series counter.</summary>
    public string Name { get; }

    public IReadOnlyList<string> LabelNames => _labelNames;

    public int Count => Volatile.Read(ref _count);

    public long Dropped => Interlocked.Read(ref _dropped);

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
            if (Volatile.Read(ref _count) >= _maxSeries)
            {
                Interlocked.Increment(ref _dropped);
                return _sink;
            }

            series = Create(key);
            if (series is null)
            {
                Interlocked.Increment(ref _dropped);
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
        if (key.Count != _labelNames.Length)
        {
            throw new ArgumentException($"Family '{Name}' has {_labelNames.Length} labels but the key has {key.Count} values.", nameof(key));
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

            var values = new string[_labelNames.Length];
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = key.GetValue(i) ?? string.Empty;
            }

            var series = _factory();
            _entries.Add(new SeriesEntry<TSeries>(values, ExpositionWriter.EncodeLabelBlock(_labelNames, values), series));
            _byValue[key] = series;
            _version++;
            Volatile.Write(ref _count, _count + 1);
            return series;
        }
    }

    /// <summary>All series, ordered by label values (ordinal), for a deterministic exposition.</summary>
    public ReadOnlySpan<SeriesEntry<TSeries>> Snapshot()
    {
        lock (_createLock)
        {
            if (_sortedVersion != _version)
            {
                var sorted = _entries.ToArray();
                Array.Sort(sorted, static (a, b) => CompareValues(a.Values, b.Values));
                _sorted = sorted;
                _sortedVersion = _version;
            }

            return _sorted;
        }
    }

    private static int CompareValues(string[] a, string[] b)
    {
        for (var i = 0; i < a.Length; i++)
        {
            var c = string.CompareOrdinal(a[i], b[i]);
            if (c != 0)
            {
                return c;
            }
        }

        return 0;
    }
}

/// <summary>A series with its label values and their encoded exposition form.</summary>
internal sealed record SeriesEntry<TSeries>(string[] Values, byte[] LabelBlock, TSeries Series);
