namespace MeshProxy.Sidecar.Resilience;

/// <summary>How a wait for a <see cref="SlotGate"/> slot ended.</summary>
internal enum GateResult
{
    Entered,

    /// <summary>The queue was full: refused at once.</summary>
    Overflow,

    TimedOut,

    Canceled,
}

/// <summary>
/// A counted limit with a bounded FIFO queue in front of it: Envoy's "pending" requests (waiting for a
/// connection or stream) and connections waiting for the cluster's connection limit. Entering while a slot
/// is free costs one interlocked increment; only waiters take the lock. The limit is passed on each call
/// because it belongs to the snapshot's policy while the gate outlives snapshots (and, for HTTP/2 streams,
/// follows the server's advertised stream limit: <see cref="Resize"/>).
/// </summary>
internal sealed class SlotGate
{
    private readonly Lock _lock = new();
    private readonly LinkedList<TaskCompletionSource> _waiters = new();
    private int _count;
    private int _waiting;
    private int _limit = int.MaxValue; // the limit the waiters queued under, for whoever hands slots to them

    /// <summary>Slots taken.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Callers queued for a slot.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    public bool TryEnter(int limit)
    {
        if (Interlocked.Increment(ref _count) <= limit)
        {
            return true;
        }

        Exit();
        return false;
    }

    /// <summary>Takes a slot regardless of the limit (counted all the same).</summary>
    public void EnterAnyway() => Interlocked.Increment(ref _count);

    /// <summary>A slot now, else a place in the queue (at most <paramref name="maxWaiting"/> long) until one frees up, the timeout (on <paramref name="time"/>), or cancellation.</summary>
    public ValueTask<GateResult> EnterAsync(int limit, int maxWaiting, TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken) =>
        TryEnter(limit) ? ValueTask.FromResult(GateResult.Entered) : WaitAsync(limit, maxWaiting, timeout, time, cancellationToken);

    /// <summary>
    /// The limit changed (an HTTP/2 server advertised another stream limit): waiters are let in up to the
    /// new one now. A smaller limit takes effect as slots are given back; nobody in is put out.
    /// </summary>
    public void Resize(int limit)
    {
        lock (_lock)
        {
            _limit = limit;
        }

        if (Volatile.Read(ref _waiting) > 0)
        {
            Grant();
        }
    }

    public void Exit()
    {
        Interlocked.Decrement(ref _count);
        // Both sides use full fences (the decrement here, the waiter's increment of _waiting), so a waiter
        // that queued as this slot was given back is seen here, or sees the slot free in its own Grant.
        if (Volatile.Read(ref _waiting) > 0)
        {
            Grant();
        }
    }

    private async ValueTask<GateResult> WaitAsync(int limit, int maxWaiting, TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        LinkedListNode<TaskCompletionSource> node;
        lock (_lock)
        {
            if (_waiters.Count >= maxWaiting)
            {
                return GateResult.Overflow;
            }

            _limit = limit;
            node = _waiters.AddLast(new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            Interlocked.Increment(ref _waiting);
        }

        // A slot may have been given back between TryEnter and the queueing.
        Grant();
        try
        {
            await node.Value.Task.WaitAsync(timeout, time, cancellationToken);
            return GateResult.Entered;
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            lock (_lock)
            {
                if (node.List is not null)
                {
                    _waiters.Remove(node);
                    Interlocked.Decrement(ref _waiting);
                    return e is TimeoutException ? GateResult.TimedOut : GateResult.Canceled;
                }
            }

            // Granted just as the wait ended: the slot is ours, and is given back.
            Exit();
            return e is TimeoutException ? GateResult.TimedOut : GateResult.Canceled;
        }
    }

    private void Grant()
    {
        lock (_lock)
        {
            while (_waiters.First is { } first)
            {
                if (Interlocked.Increment(ref _count) > _limit)
                {
                    Interlocked.Decrement(ref _count);
                    return;
                }

                _waiters.RemoveFirst();
                Interlocked.Decrement(ref _waiting);
                first.Value.SetResult();
            }
        }
    }
}
