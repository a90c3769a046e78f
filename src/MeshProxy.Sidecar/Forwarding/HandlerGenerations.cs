using System.Collections.Concurrent;

namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// <c>maxRequestsPerConnection</c> on HTTP/2 upstream connections. SocketsHttpHandler cannot be told to
/// stop opening streams on one connection, but its connections belong to the handler that opened them:
/// so each endpoint's requests go through a handler (a generation) that is given at most N of them, and
/// then replaced by a fresh one. A generation's connections together carried at most N streams, so none
/// carried more. The replaced generation takes no new request; it is disposed when the last request
/// sending through it is done, and its connections close then. Nothing is hidden from the handler (no
/// synthetic GOAWAY), so no request is failed or sent twice by the rotation.
/// Per endpoint, so that one busy endpoint reaching N does not close the other endpoints' connections.
/// </summary>
internal sealed class HandlerGenerations(int limit, Func<bool, HttpMessageInvoker> create)
{
    private readonly ConcurrentDictionary<string, Slot> _plaintext = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Slot> _mtls = new(StringComparer.Ordinal);

    public int Limit => limit;

    /// <summary>The generation to send one attempt to <paramref name="endpoint"/> through, acquired: release it after the send.</summary>
    public HandlerGeneration Acquire(string endpoint, bool mtls)
    {
        var slots = mtls ? _mtls : _plaintext;
        if (!slots.TryGetValue(endpoint, out var slot))
        {
            // The slot holds no handler until first used, so one made by a losing GetOrAdd costs nothing.
            slot = slots.GetOrAdd(endpoint, static _ => new Slot());
        }

        while (true)
        {
            var current = Volatile.Read(ref slot.Current);
            if (current is not null && current.TryAcquire())
            {
                // The reference is taken before the ticket, so the generation cannot be disposed while
                // this request holds ticket k <= N; tickets beyond N never send through it.
                var ticket = current.TakeTicket();
                if (ticket <= limit)
                {
                    if (ticket == limit)
                    {
                        // The last one: replaced now rather than on the next request, so that its
                        // connections close as soon as this request and the others in flight are done.
                        Rotate(slot, current, mtls);
                    }

                    return current;
                }

                current.Release();
            }

            Rotate(slot, current, mtls);
        }
    }

    /// <summary>Retires every current generation; called once the pool is drained (nothing in flight).</summary>
    public void Dispose()
    {
        foreach (var slot in _plaintext.Values.Concat(_mtls.Values))
        {
            lock (slot.Lock)
            {
                slot.Current?.Release();
                slot.Current = null;
                slot.Disposed = true;
            }
        }
    }

    /// <summary>
    /// Replaces <paramref name="spent"/> (null: none yet) with a fresh generation (a handler, no connection
    /// yet), unless another request already did. A drained generation fails TryAcquire only after it was
    /// replaced, so the caller's next read sees its successor. Taken by the Nth request of each generation
    /// and by the few that read the generation just before it was replaced and drew tickets beyond N.
    /// </summary>
    private void Rotate(Slot slot, HandlerGeneration? spent, bool mtls)
    {
        lock (slot.Lock)
        {
            if (!ReferenceEquals(slot.Current, spent))
            {
                return;
            }

            // Cannot happen (the pool is disposed only once nothing is in flight and nothing can acquire
            // it), but a request must not make a handler nobody would dispose.
            ObjectDisposedException.ThrowIf(slot.Disposed, this);
            Volatile.Write(ref slot.Current, new HandlerGeneration(create(mtls)));
        }

        // The slot's own reference: the spent generation closes when its last request releases it.
        spent?.Release();
    }

    private sealed class Slot
    {
        public readonly Lock Lock = new();
        public HandlerGeneration? Current;
        public bool Disposed;
    }
}

/// <summary>One handler of an endpoint's rotation, reference-counted by the attempts sending through it.</summary>
internal sealed class HandlerGeneration(HttpMessageInvoker invoker)
{
    private ReferenceCount _references = new(); // the slot's own, given up when the generation is replaced
    private int _tickets;

    public HttpMessageInvoker Invoker => invoker;

    public bool TryAcquire() => _references.TryAcquire();

    public int TakeTicket() => Interlocked.Increment(ref _tickets);

    public void Release()
    {
        if (_references.Release())
        {
            // Replaced and drained: no stream of this handler is in use, so its connections close now.
            invoker.Dispose();
        }
    }
}
