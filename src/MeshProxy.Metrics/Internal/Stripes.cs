using System.Numerics;

namespace MeshProxy.Metrics.Internal;

/// <summary>
/// Per-core striping of a series' cells. Each series owns one long[]; stripe <c>s</c> starts at
/// <c>s * Stride(cells)</c>. A thread adds into the stripe of the core it runs on, so two cores
/// recording the same series do not fight over one cache line; a scrape sums the stripes.
/// </summary>
internal static class Stripes
{
    /// <summary>Number of stripes: the core count rounded up to a power of two, at most 8.</summary>
    public static readonly int Count = (int)Math.Min(8u, BitOperations.RoundUpToPowerOf2((uint)Math.Max(1, Environment.ProcessorCount)));

    private static readonly int Mask = Count - 1;

    // 8 longs (64 bytes) between the last cell of one stripe and the first cell of the next keep
    // them on different cache lines whatever the array's alignment.
    private const int PaddingCells = 8;

    public static int Stride(int cells) => Count == 1 ? cells : cells + PaddingCells;

    public static long[] Allocate(int cells) => new long[Stride(cells) * Count];

    /// <summary>Index of the first cell of the current core's stripe.</summary>
    public static int CurrentBase(int stride) => (Thread.GetCurrentProcessorId() & Mask) * stride;

    /// <summary>Sum of one cell over all stripes.</summary>
    public static long Sum(long[] cells, int stride, int offset)
    {
        long total = 0;
        for (var s = 0; s < Count; s++)
        {
            total += Volatile.Read(ref cells[(s * stride) + offset]);
        }

        return total;
    }

    /// <summary>Sum of one cell that holds a double's bits over all stripes.</summary>
    public static double SumDouble(long[] cells, int stride, int offset)
    {
        double total = 0;
        for (var s = 0; s < Count; s++)
        {
            total += BitConverter.Int64BitsToDouble(Volatile.Read(ref cells[(s * stride) + offset]));
        }

        return total;
    }

    public static void AddDouble(ref long cell, double value)
    {
        var seen = Volatile.Read(ref cell);
        while (true)
        {
            var next = BitConverter.DoubleToInt64Bits(BitConverter.Int64BitsToDouble(seen) + value);
            var previous = Interlocked.CompareExchange(ref cell, next, seen);
            if (previous == seen)
            {
                return;
            }

            seen = previous;
        }
    }
}
