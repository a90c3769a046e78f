using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Requests whose caller went away (flag DC), summed up in one log line per interval. A client decides how
/// often it aborts, so a line per abort at Warning let any client write the sidecar's log at will (two lines,
/// ~1.5 KB per abort, before issue 19). Each abort is now one Debug line (Telemetry/UpstreamFailure.cs) and a
/// count (<c>meshproxy_downstream_aborted_total</c>, and <c>istio_requests_total{response_flags="DC"}</c>);
/// this class writes, at the end of an interval that had aborts, one Information line with their number per
/// direction. An interval without an abort writes nothing and holds no timer: the first abort arms a one-shot
/// timer on the injected clock.
/// </summary>
internal sealed partial class AbortedRequests : IDisposable
{
    /// <summary>One summary line a minute at most: enough to see a trend, too few to matter.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromMinutes(1);

    public const int SummaryEvent = 19;

    private readonly TimeProvider _time;
    private readonly TimeSpan _interval;
    private readonly ILogger _logger;
    private long _inbound;
    private long _outbound;
    private int _armed;
    private ITimer? _timer;

    public AbortedRequests(TimeProvider time, ILogger<AbortedRequests> logger, TimeSpan? interval = null)
    {
        _time = time;
        _logger = logger;
        _interval = interval ?? DefaultInterval;
    }

    /// <summary>One aborted request: counted for the interval's line; the first of an interval arms its timer.</summary>
    public void Record(bool outbound)
    {
        if (outbound)
        {
            Interlocked.Increment(ref _outbound);
        }
        else
        {
            Interlocked.Increment(ref _inbound);
        }

        // Counted before the check: an abort that finds the timer armed is summed by that timer's line, because
        // Summarize disarms before it takes the counts (one that comes between the two arms a new timer).
        if (Volatile.Read(ref _armed) == 0 && Interlocked.Exchange(ref _armed, 1) == 0)
        {
            var timer = _time.CreateTimer(static state => ((AbortedRequests)state!).Summarize(), this, _interval, Timeout.InfiniteTimeSpan);
            Interlocked.Exchange(ref _timer, timer)?.Dispose(); // the previous one fired already
        }
    }

    public void Dispose() => Interlocked.Exchange(ref _timer, null)?.Dispose();

    private void Summarize()
    {
        Volatile.Write(ref _armed, 0);
        var inbound = Interlocked.Exchange(ref _inbound, 0);
        var outbound = Interlocked.Exchange(ref _outbound, 0);
        if (inbound + outbound > 0)
        {
            Summary(_logger, inbound + outbound, _interval.TotalSeconds, outbound, inbound);
        }
    }

    [LoggerMessage(SummaryEvent, LogLevel.Information,
        "{Count} requests aborted by their callers (DC) in the last {Seconds}s: {Outbound} outbound, {Inbound} inbound; each is logged at Debug and counted in meshproxy_downstream_aborted_total")]
    private static partial void Summary(ILogger logger, long count, double seconds, long outbound, long inbound);
}
