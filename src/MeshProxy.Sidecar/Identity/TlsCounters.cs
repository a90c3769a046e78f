using MeshProxy.Identity;

namespace MeshProxy.Sidecar.Identity;

/// <summary>
/// Handshake outcomes, counted with Interlocked so that any thread may add and any reader (telemetry,
/// tests, /certs) sees a consistent number. Refusals are kept per verifier reason.
/// </summary>
internal sealed class TlsCounters
{
    private static readonly int FailureKinds = Enum.GetValues<PeerVerificationFailure>().Length;
    private readonly long[] _inboundRefusedByReason = new long[FailureKinds];
    private readonly long[] _outboundRefusedByReason = new long[FailureKinds];
    private long _inboundHandshakes;
    private long _inboundHandshakeFailures;
    private long _inboundHandshakesShed;
    private long _plaintextRefused;
    private long _plaintextAccepted;
    private long _tlsOnDisabledPort;
    private long _outboundHandshakes;
    private long _outboundHandshakeFailures;

    /// <summary>Inbound mTLS handshakes that completed with a verified peer.</summary>
    public long InboundHandshakes => Interlocked.Read(ref _inboundHandshakes);

    /// <summary>Inbound connections closed because the client's certificate was refused (all reasons).</summary>
    public long InboundPeerRefused => Sum(_inboundRefusedByReason);

    /// <summary>Inbound handshakes that failed for another reason: an old protocol, no shared cipher, garbage, a timeout.</summary>
    public long InboundHandshakeFailures => Interlocked.Read(ref _inboundHandshakeFailures);

    /// <summary>Inbound TLS connections closed before their handshake because the listener's handshake rate was exceeded.</summary>
    public long InboundHandshakesShed => Interlocked.Read(ref _inboundHandshakesShed);

    /// <summary>Plaintext connections refused by STRICT mode.</summary>
    public long PlaintextRefused => Interlocked.Read(ref _plaintextRefused);

    /// <summary>Plaintext connections accepted by PERMISSIVE or DISABLE mode.</summary>
    public long PlaintextAccepted => Interlocked.Read(ref _plaintextAccepted);

    /// <summary>TLS connections refused because their port's mode is DISABLE (plaintext only).</summary>
    public long TlsOnDisabledPort => Interlocked.Read(ref _tlsOnDisabledPort);

    public long OutboundHandshakes => Interlocked.Read(ref _outboundHandshakes);

    /// <summary>Outbound connections abandoned because the server's certificate was refused (a wrong identity, say).</summary>
    public long OutboundPeerRefused => Sum(_outboundRefusedByReason);

    public long OutboundHandshakeFailures => Interlocked.Read(ref _outboundHandshakeFailures);

    public long InboundRefusedFor(PeerVerificationFailure reason) => Interlocked.Read(ref _inboundRefusedByReason[(int)reason]);

    public long OutboundRefusedFor(PeerVerificationFailure reason) => Interlocked.Read(ref _outboundRefusedByReason[(int)reason]);

    internal void CountInboundHandshake() => Interlocked.Increment(ref _inboundHandshakes);

    internal void CountInboundRefused(PeerVerificationFailure reason) => Interlocked.Increment(ref _inboundRefusedByReason[(int)reason]);

    internal void CountInboundHandshakeFailure() => Interlocked.Increment(ref _inboundHandshakeFailures);

    internal void CountInboundHandshakeShed() => Interlocked.Increment(ref _inboundHandshakesShed);

    internal void CountPlaintextRefused() => Interlocked.Increment(ref _plaintextRefused);

    internal void CountPlaintextAccepted() => Interlocked.Increment(ref _plaintextAccepted);

    internal void CountTlsOnDisabledPort() => Interlocked.Increment(ref _tlsOnDisabledPort);

    internal void CountOutboundHandshake() => Interlocked.Increment(ref _outboundHandshakes);

    internal void CountOutboundRefused(PeerVerificationFailure reason) => Interlocked.Increment(ref _outboundRefusedByReason[(int)reason]);

    internal void CountOutboundHandshakeFailure() => Interlocked.Increment(ref _outboundHandshakeFailures);

    private static long Sum(long[] counts)
    {
        long total = 0;
        for (var i = 0; i < counts.Length; i++)
        {
            total += Interlocked.Read(ref counts[i]);
        }

        return total;
    }
}
