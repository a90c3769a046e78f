using MeshProxy.Metrics.Internal;

namespace MeshProxy.Metrics;

/// <summary>A monotonically increasing integer count. Safe to use from any thread; recording never allocates.</summary>
public sealed class Counter
{
    private const int Cells = 1;
    private static readonly int Stride = Stripes.Stride(Cells);
    private readonly long[] _cells = Stripes.Allocate(Cells);

    internal Counter()
    {
    }

    public long Value => Stripes.Sum(_cells, Stride, 0);

    public void Increment() => Interlocked.Increment(ref _cells[Stripes.CurrentBase(Stride)]);

    /// <summary>Adds <paramref name="amount"/>, which must not be negative: a counter never goes down.</summary>
    public void Add(long amount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(amount);
        Interlocked.Add(ref _cells[Stripes.CurrentBase(Stride)], amount);
    }
}

/// <summary>A value that goes up and down. Not striped: <see cref="Set"/> needs one authoritative cell.</summary>
public sealed class Gauge
{
    private long _bits;

    internal Gauge()
    {
    }

    public double Value => BitConverter.Int64BitsToDouble(Volatile.Read(ref _bits));

    public void Set(double value) => Interlocked.Exchange(ref _bits, BitConverter.DoubleToInt64Bits(value));

    public void Increment(double amount = 1) => Stripes.AddDouble(ref _bits, amount);

    public void Decrement(double amount = 1) => Stripes.AddDouble(ref _bits, -amount);
}

/// <summary>Counts observations into fixed buckets and keeps their sum. Recording never allocates.</summary>
public sealed class Histogram
{
    private readonly double[] _bounds;
    private readonly long[] _cells;
    private readonly int _stride;

    internal Histogram(double[] bounds)
    {
        _bounds = bounds;
        var cells = HistogramCells.CellCount(bounds);
        _cells = Stripes.Allocate(cells);
        _stride = Stripes.Stride(cells);
    }

    internal double[] Bounds => _bounds;

    public long Count
    {
        get
        {
            long total = 0;
            for (var b = 0; b <= _bounds.Length; b++)
            {
                total += Stripes.Sum(_cells, _stride, b);
            }

            return total;
        }
    }

    public double Sum => Stripes.SumDouble(_cells, _stride, _bounds.Length + 1);

    /// <summary>Records one observation. NaN is ignored (it has no bucket and would make the sum NaN for ever).</summary>
    public void Observe(double value) => HistogramCells.Observe(_cells, Stripes.CurrentBase(_stride), _bounds, value);

    internal void Write(ExpositionWriter writer, in HistogramNames names, byte[] labelBlock) =>
        HistogramWriter.Write(writer, names, labelBlock, _cells, _stride, 0, _bounds.Length);
}
