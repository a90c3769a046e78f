namespace MeshProxy.Sidecar.ControlPlaneClient;

/// <summary>Reconnection and keepalive timing (tests shorten them) and message size limits of the control-plane calls.</summary>
internal sealed record ControlPlaneClientOptions
{
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(250);

    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan KeepAlivePingDelay { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan KeepAlivePingTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Largest snapshot accepted (the control plane sends no larger); a larger one fails the stream with RESOURCE_EXHAUSTED.</summary>
    public int MaxReceiveMessageSize { get; init; } = 4 << 20;

    /// <summary>Largest request sent (a NACK carries every error, so not tiny).</summary>
    public int MaxSendMessageSize { get; init; } = 1 << 20;

    /// <summary>
    /// Exponential backoff with jitter: the ceiling doubles per failed attempt up to
    /// <see cref="MaxBackoff"/>, and the delay is drawn from its upper half, so a fleet that lost the
    /// control plane together does not come back in lockstep, yet no sidecar retries too eagerly.
    /// </summary>
    public TimeSpan Backoff(int attempt, Random random)
    {
        var ceiling = Math.Min(MaxBackoff.TotalMilliseconds, InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 30)));
        return TimeSpan.FromMilliseconds(ceiling / 2 + random.NextDouble() * ceiling / 2);
    }
}
