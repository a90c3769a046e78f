namespace MeshProxy.Grpc.Client;

public sealed record GrpcCallOptions
{
    /// <summary>Sent as grpc-timeout and enforced locally: the call fails with DEADLINE_EXCEEDED after it.</summary>
    public DateTimeOffset? Deadline { get; init; }

    /// <summary>Request metadata (lower-case ASCII names), e.g. ("authorization", "Bearer ...").</summary>
    public IReadOnlyList<KeyValuePair<string, string>>? Metadata { get; init; }

    /// <summary>Cancels the call (RST_STREAM CANCEL); it then fails with CANCELLED.</summary>
    public CancellationToken CancellationToken { get; init; }

    internal static readonly GrpcCallOptions Default = new();
}
