using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.Sidecar.Tests.Resilience.InMemory;

/// <summary>
/// Runs a scenario on the test's thread against a fake clock. Every continuation of the code under test is
/// posted back here (a single-threaded synchronization context), so "nothing left to run" is known exactly:
/// time moves one millisecond at a time only then, timers fire in order, and each fired timer's work runs
/// at the fake moment it fired. Elapsed times are read on the fake clock, so they are exact on any machine.
/// </summary>
internal sealed class FakeClockLoop : SynchronizationContext
{
    private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(1);
    private readonly Queue<(SendOrPostCallback Callback, object? State)> _queue = new();
    private readonly SemaphoreSlim _posted = new(0);

    private readonly DateTimeOffset _start;

    public FakeClockLoop()
    {
        _start = Time.GetUtcNow();
    }

    public FakeTimeProvider Time { get; } = new();

    /// <summary>Milliseconds on the fake clock since the loop was made.</summary>
    public long NowMs => (long)(Time.GetUtcNow() - _start).TotalMilliseconds;

    public override void Post(SendOrPostCallback d, object? state)
    {
        lock (_queue)
        {
            _queue.Enqueue((d, state));
        }

        _posted.Release();
    }

    public override void Send(SendOrPostCallback d, object? state) => throw new NotSupportedException("the loop only takes posts");

    public override SynchronizationContext CreateCopy() => this;

    /// <summary>Starts <paramref name="scenario"/> on the loop and runs it, moving the fake clock only when nothing is left to run, until it completes.</summary>
    /// <param name="handingOver">
    /// True while work is on its way back through the thread pool (a queue's grant completes its waiter
    /// asynchronously): the clock then waits, in real time, for that work instead of moving on without it.
    /// </param>
    public T Run<T>(Func<Task<T>> scenario, TimeSpan? fakeLimit = null, Func<bool>? handingOver = null)
    {
        var limit = (long)(fakeLimit ?? TimeSpan.FromMinutes(10)).TotalMilliseconds;
        return OnLoop(() =>
        {
            var task = scenario();
            var started = NowMs;
            while (true)
            {
                Settle();
                if (task.IsCompleted)
                {
                    return task.GetAwaiter().GetResult();
                }

                if (NowMs - started >= limit)
                {
                    throw new TimeoutException($"the scenario did not finish within {limit} ms of fake time");
                }

                if (handingOver?.Invoke() == true)
                {
                    if (!_posted.Wait(TimeSpan.FromSeconds(10)))
                    {
                        throw new TimeoutException("work handed over through the thread pool never came back");
                    }

                    _posted.Release(); // counted again by Settle
                    continue;
                }

                Time.Advance(Step);
            }
        });
    }

    public void Run(Func<Task> scenario, TimeSpan? fakeLimit = null, Func<bool>? handingOver = null) => Run(async () =>
    {
        await scenario();
        return 0;
    }, fakeLimit, handingOver);

    /// <summary>
    /// Moves the clock <paramref name="by"/>, a millisecond at a time, running what each moment set off.
    /// Called from within a scenario, where it is the scenario's own step.
    /// </summary>
    public void Advance(TimeSpan by)
    {
        for (var left = by; left > TimeSpan.Zero; left -= Step)
        {
            Time.Advance(left < Step ? left : Step);
            Settle();
        }
    }

    /// <summary>Moves the clock a millisecond at a time, running what each moment set off, until <paramref name="condition"/> holds (at most a minute of fake time).</summary>
    public void AdvanceUntil(Func<bool> condition)
    {
        Settle();
        for (var ms = 0; !condition(); ms++)
        {
            if (ms > 60_000)
            {
                throw new TimeoutException("the condition did not come true within a minute of fake time");
            }

            Time.Advance(Step);
            Settle();
        }
    }

    /// <summary>
    /// Runs posted work until <paramref name="condition"/> holds, waiting (in real time, at most 10 s) for work
    /// that passes through the thread pool first (a queue's grant completes its waiter asynchronously).
    /// The fake clock does not move meanwhile.
    /// </summary>
    public void RunUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            Settle();
            if (condition())
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("the condition did not come true");
            }

            _posted.Wait(TimeSpan.FromMilliseconds(20));
        }
    }

    /// <summary>Runs everything posted, and what that posts, until the queue is empty.</summary>
    private void Settle()
    {
        while (true)
        {
            (SendOrPostCallback Callback, object? State) next;
            lock (_queue)
            {
                if (!_queue.TryDequeue(out next))
                {
                    return;
                }
            }

            _posted.Wait(0);
            next.Callback(next.State);
        }
    }

    private T OnLoop<T>(Func<T> body)
    {
        var previous = Current;
        SetSynchronizationContext(this);
        try
        {
            return body();
        }
        finally
        {
            SetSynchronizationContext(previous);
        }
    }
}
