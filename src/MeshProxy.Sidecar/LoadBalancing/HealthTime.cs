namespace MeshProxy.Sidecar.LoadBalancing;

/// <summary>
/// Milliseconds on a <see cref="TimeProvider"/>'s timestamp clock: the unit of endpoint health's times (ejection
/// deadlines, peak-EWMA decay). Every reader of endpoint health (the pickers, outlier detection, /config_dump, the
/// ejected-endpoints gauge) takes its "now" from here or from Resilience/ResilienceClock.cs, which divides the same way.
/// </summary>
internal static class HealthTime
{
    public static long Milliseconds(TimeProvider time)
    {
        var perMs = TicksPerMillisecond(time);
        var timestamp = time.GetTimestamp();
        return perMs > 0 ? timestamp / perMs : (long)(timestamp * (1000.0 / time.TimestampFrequency));
    }

    /// <summary>Timestamp ticks per millisecond when a whole number (1,000,000 for Linux's Stopwatch, 10,000 for a FakeTimeProvider), else 0.</summary>
    public static long TicksPerMillisecond(TimeProvider time)
    {
        var frequency = time.TimestampFrequency;
        return frequency >= 1000 && frequency % 1000 == 0 ? frequency / 1000 : 0;
    }
}
