namespace MeshProxy.Sidecar.Mirroring;

/// <summary>
/// The bounds a mirrored copy is kept within, so that shadow traffic can never cost the primary request anything:
/// the body it may carry, how long it may take, how many may be in flight, and the draw against a route's
/// mirrorPercentage (replaceable so that tests decide it).
/// </summary>
internal sealed class MirrorOptions
{
    /// <summary>64 KiB: a body is copied from what the primary send reads, so only a small one is held for the copy.</summary>
    public const int DefaultBodyLimit = 64 * 1024;

    /// <summary>Bodies up to this many bytes are mirrored; a larger one (declared or read) skips the copy.</summary>
    public int BodyLimit { get; init; } = DefaultBodyLimit;

    /// <summary>The whole copy (connect, send, answer read and discarded); Envoy's shadow has the route's timeout, which may be unbounded.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Copies in flight at once, over all routes; beyond it a copy is skipped (a slow shadow cannot pile up sockets and memory).</summary>
    public int MaxConcurrent { get; init; } = 64;

    /// <summary>A number in [0, 100): the request is copied when it is below the route's percentage.</summary>
    public Func<double> Draw { get; init; } = static () => Random.Shared.NextDouble() * 100;
}
