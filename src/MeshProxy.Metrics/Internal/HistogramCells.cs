namespace MeshProxy.Metrics.Internal;

/// <summary>
/// The layout of one histogram inside a stripe: one non-cumulative count per bucket (the last one is
/// +Inf), then the sum as a double's bits. Counts are made cumulative only at scrape time, so an
/// observation touches one bucket cell and the sum cell.
/// </summary>
internal static class HistogramCells
{
    public static int CellCount(double[] bounds) => bounds.Length + 2;

    public static void Observe(long[] cells, int at, double[] bounds, double value)
    {
        // NaN has no bucket and would poison _sum for ever; it is not an observation.
        if (double.IsNaN(value))
        {
            return;
        }

        var bucket = BucketIndex(bounds, value);
        Interlocked.Increment(ref cells[at + bucket]);
        Stripes.AddDouble(ref cells[at + bounds.Length + 1], value);
    }

    /// <summary>First bucket whose upper bound is &gt;= value (Prometheus' "le"), or bounds.Length for +Inf.</summary>
    public static int BucketIndex(double[] bounds, double value)
    {
        int lo = 0, hi = bounds.Length;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (value <= bounds[mid])
            {
                hi = mid;
            }
            else
            {
                lo = mid + 1;
            }
        }

        return lo;
    }
}
