using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Resilience;

/// <summary>
/// linkerd's kind of retry budget: every request deposits <see cref="RetryBudgetPolicy.Ratio"/> of a
/// token, time deposits <see cref="RetryBudgetPolicy.MinPerSecond"/> tokens a second, and each retry
/// takes one. During a total outage the retries are therefore bounded by
/// ratio x requests + floor x seconds + what was saved, and what can be saved is capped (one second
/// of floor plus the deposits of 100 requests), so a long quiet spell does not bank a storm.
/// </summary>
/// <remarks>
/// Deposits are one interlocked add on the request path; the cap and the time-based refill are
/// applied under a lock only when a retry is asked for, which is the rare path.
/// </remarks>
internal sealed class RetryBudget
{
    private const long Milli = 1000;
    private readonly Lock _lock = new();
    private long _milliTokens;
    private long _refilledAtMs;
    private bool _started;
    private long _exhausted;

    /// <summary>Retries refused because the budget was spent.</summary>
    public long Exhausted => Volatile.Read(ref _exhausted);

    public void Deposit(RetryBudgetPolicy policy) =>
        Interlocked.Add(ref _milliTokens, (long)(policy.Ratio * Milli));

    /// <summary>Takes one retry's worth; false (and counted) when the budget is spent.</summary>
    public bool TryWithdraw(RetryBudgetPolicy policy, int retriesInFlight, long nowMs)
    {
        if (retriesInFlight < policy.MinConcurrency)
        {
            return true;
        }

        lock (_lock)
        {
            if (!_started)
            {
                // A fresh budget starts with one second of floor, so the first failures can be retried.
                _started = true;
                _refilledAtMs = nowMs;
                Interlocked.Add(ref _milliTokens, policy.MinPerSecond * Milli);
            }

            var elapsed = nowMs - _refilledAtMs;
            if (elapsed > 0)
            {
                Interlocked.Add(ref _milliTokens, elapsed * policy.MinPerSecond);
                _refilledAtMs = nowMs;
            }

            var cap = policy.MinPerSecond * Milli + (long)(policy.Ratio * 100 * Milli);
            if (Volatile.Read(ref _milliTokens) > cap)
            {
                // A deposit racing this write may be lost; that only ever errs towards fewer retries.
                Volatile.Write(ref _milliTokens, cap);
            }

            if (Volatile.Read(ref _milliTokens) >= Milli)
            {
                Interlocked.Add(ref _milliTokens, -Milli);
                return true;
            }
        }

        Interlocked.Increment(ref _exhausted);
        return false;
    }
}
