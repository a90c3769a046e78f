namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// A token bucket on the TLS handshakes one listener starts. A handshake is the one thing a client without a
/// certificate can make the sidecar pay for (an ECDHE exchange and a signature, ~1 ms of CPU each); past the rate,
/// new TLS connections are closed before the handshake, so a flood costs the sidecar a bounded share of its CPU and
/// the requests on established connections (HTTP/2 between sidecars reuses them) keep being served. A rate rather
/// than a concurrency bound: a client that stalls mid-handshake would hold a concurrency slot, not a token.
/// </summary>
internal sealed class HandshakeRateLimit
{
    /// <summary>Sustained handshakes per second per core: well above what a core completes (~400-500/s measured), so only a flood meets it.</summary>
    public const int PerSecondPerCore = 500;

    private readonly double _perSecond;
    private readonly double _burst;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private double _tokens;
    private long _refilledAt;

    public HandshakeRateLimit(double perSecond, double burst, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(perSecond);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
        _perSecond = perSecond;
        _burst = burst;
        _time = time;
        _tokens = burst;
        _refilledAt = time.GetTimestamp();
    }

    /// <summary>The default for this machine: <see cref="PerSecondPerCore"/> per core, a second's worth of burst.</summary>
    public static HandshakeRateLimit ForThisMachine(TimeProvider time)
    {
        var rate = (double)PerSecondPerCore * Environment.ProcessorCount;
        return new HandshakeRateLimit(rate, rate, time);
    }

    /// <summary>True when a handshake may start now (and takes its token); false when it must be refused.</summary>
    public bool TryAcquire()
    {
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            _tokens = Math.Min(_burst, _tokens + (_time.GetElapsedTime(_refilledAt, now).TotalSeconds * _perSecond));
            _refilledAt = now;
            if (_tokens >= 1)
            {
                _tokens -= 1;
                return true;
            }
        }

        return false;
    }
}
