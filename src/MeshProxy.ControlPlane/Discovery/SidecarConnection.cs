using System.Threading.Channels;
using MeshProxy.Api.V1;
using MeshProxy.ControlPlane.Snapshots;

namespace MeshProxy.ControlPlane.Discovery;

/// <summary>Where a sidecar stands: SYNCED (ACKed what was sent), STALE (sent, not yet ACKed), NACK (refused the last one sent).</summary>
internal enum SyncStatus
{
    Synced,
    Stale,
    Nack,
}

internal sealed record NackRecord(string Version, string Nonce, string Error, DateTimeOffset At);

/// <summary>
/// One connected sidecar (one StreamSnapshots call). Its status fields are written by its own stream's
/// reader and pusher and read by /debug/syncz; they are swapped as a whole record, so a reader never
/// sees half an update.
/// </summary>
internal sealed class SidecarConnection
{
    // Capacity 1 and DropWrite: any number of changes while a push is in progress coalesce into one more push.
    private readonly Channel<byte> _wake = Channel.CreateBounded<byte>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private volatile SyncState _state;
    private volatile Workload _workload;

    /// <param name="workload">Who the sidecar serves when a source knows better than its Node (its Pod in the Kubernetes API).</param>
    public SidecarConnection(Node node, string address, DateTimeOffset connectedAt, Workload? workload = null)
    {
        InstanceId = string.IsNullOrEmpty(node.InstanceId) ? $"{node.Workload}.{node.Namespace}@{address}" : node.InstanceId;
        Node = node;
        _workload = workload ?? Workload.FromNode(node);
        Address = address;
        ProxyVersion = node.ProxyVersion;
        ConnectedAt = connectedAt;
        _state = new SyncState(string.Empty, string.Empty, string.Empty, null, 0, null, connectedAt);
    }

    public string InstanceId { get; }

    public Node Node { get; }

    /// <summary>Replaced when the workload's Pod changes (labels, service account); read at every push.</summary>
    public Workload Workload
    {
        get => _workload;
        set => _workload = value;
    }

    public string Address { get; }

    public string ProxyVersion { get; }

    public DateTimeOffset ConnectedAt { get; }

    public SyncState State => _state;

    public SyncStatus Status => _state switch
    {
        { SentNonce: "" } => SyncStatus.Stale,
        { LastNack: { } n } s when n.Nonce == s.SentNonce => SyncStatus.Nack,
        { AckedVersion: var a, SentVersion: var v } when a == v => SyncStatus.Synced,
        _ => SyncStatus.Stale,
    };

    public ChannelReader<byte> Wakeups => _wake.Reader;

    public void Wake() => _wake.Writer.TryWrite(0);

    public void RecordSent(WorkloadSnapshot snapshot, string nonce, DateTimeOffset at, long timestamp) =>
        _state = _state with { SentVersion = snapshot.Version, SentNonce = nonce, SentAt = at, SentTimestamp = timestamp };

    public void RecordAck(string version, DateTimeOffset now) => _state = _state with { AckedVersion = version, LastSeen = now };

    public void RecordNack(NackRecord nack) => _state = _state with { LastNack = nack, LastSeen = nack.At };

    public void RecordSeen(DateTimeOffset now) => _state = _state with { LastSeen = now };

    internal sealed record SyncState(
        string AckedVersion,
        string SentVersion,
        string SentNonce,
        DateTimeOffset? SentAt,
        long SentTimestamp,
        NackRecord? LastNack,
        DateTimeOffset LastSeen);
}
