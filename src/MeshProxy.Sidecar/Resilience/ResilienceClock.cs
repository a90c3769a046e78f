using System.Collections.Concurrent;
using MeshProxy.Sidecar.LoadBalancing;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// The data path's one source of time: the host's <see cref="TimeProvider"/> (TimeProvider.System in
/// production, a FakeTimeProvider in tests), read as timestamps for deadlines and latencies and as
/// milliseconds for endpoint health (ejections, peak-EWMA decay) and the retry budget. Also keeps the
/// pool of per-try timers, which must run on the same clock.
/// </summary>
/// <remarks>
/// Every reader of endpoint health (the pickers, outlier detection, /config_dump, the ejected-endpoints
/// gauge) must take its milliseconds from <see cref="Milliseconds(TimeProvider)"/> of the same provider,
/// or an ejection deadline written on one clock is compared with another. Reading the time is one virtual
/// call (<see cref="TimeProvider.GetTimestamp"/>); the divisor is computed once.
/// </remarks>
internal sealed class ResilienceClock
{
    private const int MaxPooledTimers = 1024;
    private readonly ConcurrentQueue<CancellationTokenSource> _timers = new();
    private readonly long _ticksPerMs;
    private readonly bool _system;
    private int _pooled;

    public ResilienceClock(TimeProvider time)
    {
        Time = time;
        _ticksPerMs = HealthTime.TicksPerMillisecond(time);
        _system = ReferenceEquals(time, TimeProvider.System);
    }

    public TimeProvider Time { get; }

    public long Timestamp() => Time.GetTimestamp();

    public long Milliseconds(long timestamp) => _ticksPerMs > 0 ? timestamp / _ticksPerMs : (long)(timestamp * (1000.0 / Time.TimestampFrequency));

    public long NowMs() => Milliseconds(Time.GetTimestamp());

    /// <summary>Milliseconds now on <paramref name="time"/>'s timestamp clock: what endpoint health is compared with.</summary>
    public static long Milliseconds(TimeProvider time) => HealthTime.Milliseconds(time);

    /// <summary>
    /// A per-try timer on this clock. A CancellationTokenSource with a timeout allocates itself, its timer and
    /// registration nodes, and a request with a per-try or route timeout needs one on every attempt. One that
    /// never fired is reset (its timer disarmed, its registrations dropped) and handed to the next request, so
    /// the success path allocates no timer at all once the pool is warm.
    /// </summary>
    public CancellationTokenSource RentTimer()
    {
        if (_timers.TryDequeue(out var timer))
        {
            Interlocked.Decrement(ref _pooled);
            return timer;
        }

        // On the system clock CancelAfter makes its own timer at first use, as before the clock was
        // injected; any other clock's timer is made now, on that clock, for CancelAfter to reuse.
        return _system ? new CancellationTokenSource() : new CancellationTokenSource(Timeout.InfiniteTimeSpan, Time);
    }

    /// <summary>Only once nothing uses the token any more: the attempt's send has returned.</summary>
    public void ReturnTimer(CancellationTokenSource timer)
    {
        if (timer.TryReset())
        {
            if (Interlocked.Increment(ref _pooled) <= MaxPooledTimers)
            {
                _timers.Enqueue(timer);
                return;
            }

            Interlocked.Decrement(ref _pooled);
        }

        timer.Dispose();
    }
}
