namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// Users of something that is retired while requests may still send through it (a cluster's pool, an
/// HTTP/2 handler generation): it starts at one, the owner's own, and once it has fallen to zero it
/// admits nobody new, so that whoever releases last disposes, and nobody acquires a disposed object.
/// A mutable struct: keep it in a non-readonly field.
/// </summary>
internal struct ReferenceCount
{
    private int _count;

    public ReferenceCount() => _count = 1;

    /// <summary>False once the count has reached zero: the object is retired and drained.</summary>
    public bool TryAcquire()
    {
        var count = Volatile.Read(ref _count);
        while (count > 0)
        {
            var seen = Interlocked.CompareExchange(ref _count, count + 1, count);
            if (seen == count)
            {
                return true;
            }

            count = seen;
        }

        return false;
    }

    /// <summary>True for the last release: the caller disposes what is counted.</summary>
    public bool Release() => Interlocked.Decrement(ref _count) == 0;
}
