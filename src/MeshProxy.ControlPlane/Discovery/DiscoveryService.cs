using MeshProxy.Api.V1;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Snapshots;
using Grpc.Core;
using RpcStatus = Grpc.Core.Status;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Discovery;

/// <summary>
/// StreamSnapshots, the xDS-style state machine of discovery.proto. Per stream, two loops: the reader
/// records ACKs and NACKs; the pusher wakes on every configuration change, recomputes this workload's
/// snapshot (shared, cached) and sends it only when its version differs from the last one sent.
/// One instance serves every stream (ControlPlaneHost binds it with MapGrpcService).
/// </summary>
internal sealed class DiscoveryService : ConfigDiscovery.ConfigDiscoveryBase, IDisposable
{
    private readonly IConfigSource _directory;
    private readonly SnapshotCache _cache;
    private readonly ConnectionRegistry _registry;
    private readonly ControlPlaneMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly TimeSpan _writeTimeout;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _pushSlots = new(MaxConcurrentPushes);
    private readonly IWorkloadResolver? _resolver;
    private readonly StreamAuthenticator? _authenticator;
    private long _nonce;

    /// <summary>
    /// How many snapshot writes may be in flight at once. A change that concerns every sidecar would
    /// otherwise put every sidecar's snapshot into Kestrel's buffers at the same moment, and Kestrel's
    /// memory pool keeps that high-water mark long afterwards (measured: 3-9 KiB of resident memory per
    /// connected sidecar at 1000). With the small response buffer set in ControlPlaneHost, a write
    /// completes only once its bytes are on their way to the socket, so this bounds the bytes buffered,
    /// not just the calls.
    /// </summary>
    internal const int MaxConcurrentPushes = 64;

    /// <summary>The refusal reason (metric label) of a stream whose credential proves another workload than it claims.</summary>
    internal const string WorkloadMismatch = "workload_mismatch";

    /// <summary>
    /// A slot normally turns over in well under a millisecond. Sidecars that stopped reading hold theirs
    /// until the write timeout; past this wait a push goes ahead without a slot, so they can delay the
    /// others by this much at most.
    /// </summary>
    private static readonly TimeSpan PushSlotWait = TimeSpan.FromSeconds(1);

    public DiscoveryService(
        IConfigSource directory, SnapshotCache cache, ConnectionRegistry registry, ControlPlaneMetrics metrics,
        TimeProvider time, TimeSpan writeTimeout, ILogger<DiscoveryService> logger, IWorkloadResolver? resolver = null, StreamAuthenticator? authenticator = null)
    {
        _resolver = resolver;
        _authenticator = authenticator;
        _directory = directory;
        _cache = cache;
        _registry = registry;
        _metrics = metrics;
        _time = time;
        _writeTimeout = writeTimeout;
        _logger = logger;
        directory.Changed += _ => registry.WakeAll();
    }

    /// <summary>Raised after a sidecar ACKed or NACKed its snapshot, or left (the Kubernetes source's statuses count them).</summary>
    public event Action? SidecarsAnswered;

    public void Dispose() => _pushSlots.Dispose();

    public override async Task StreamSnapshots(IAsyncStreamReader<SnapshotRequest> reader, IServerStreamWriter<Snapshot> writer, ServerCallContext context)
    {
        if (!await reader.MoveNext(context.CancellationToken))
        {
            return;
        }

        var node = reader.Current.Node;
        if (node is null || string.IsNullOrEmpty(node.Workload))
        {
            throw new RpcException(new RpcStatus(StatusCode.InvalidArgument, "the first SnapshotRequest must carry node.workload (and node.namespace)"));
        }

        var http = context.GetHttpContext().Connection;
        Workload? workload = null;
        if (_resolver is not null)
        {
            // Who is asking first (an unproven caller learns nothing about pods), then who it claims to be.
            var proven = _authenticator is null ? null : await _authenticator.AuthenticateAsync(context, node.InstanceId);
            // The Node's claims are not trusted where the source knows the sidecar's Pod.
            var resolved = _resolver.Resolve(node, http.RemoteIpAddress);
            if (resolved.Workload is null)
            {
                _logger.SidecarRefused(node.InstanceId, node.Namespace, $"{http.RemoteIpAddress}", resolved.Refusal!);
                throw new RpcException(new RpcStatus(resolved.Retry ? StatusCode.Unavailable : StatusCode.PermissionDenied, resolved.Refusal!));
            }

            if (proven is not null && Mismatch(proven, resolved) is { } mismatch)
            {
                throw _authenticator!.Refuse(StatusCode.PermissionDenied, WorkloadMismatch, node.InstanceId, $"{http.RemoteIpAddress}", proven.ToString(), mismatch);
            }

            workload = resolved.Workload;
        }

        var connection = new SidecarConnection(node, $"{http.RemoteIpAddress}:{http.RemotePort}", _time.GetUtcNow(), workload);
        _registry.Add(connection);
        _logger.SidecarConnected(connection.InstanceId, connection.Workload.Name, connection.Workload.Namespace, connection.Address);
        using var pushStop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
        var pusher = PushLoopAsync(connection, writer, context, pushStop.Token);
        var reason = "stream closed by the sidecar";
        try
        {
            connection.Wake();
            while (await reader.MoveNext(context.CancellationToken))
            {
                Handle(connection, reader.Current);
            }
        }
        catch (OperationCanceledException)
        {
            reason = "connection lost";
            throw;
        }
        catch (RpcException ex)
        {
            reason = ex.Status.Detail;
            throw;
        }
        finally
        {
            _registry.Remove(connection);
            SidecarsAnswered?.Invoke();
            await pushStop.CancelAsync();
            await pusher;
            _logger.SidecarDisconnected(connection.InstanceId, reason);
        }
    }

    /// <summary>
    /// Why a proven identity may not have the workload its stream claims: config is served only for the namespace and
    /// service account the credential proved, and, when it names one (a pod-bound token), only for that pod.
    /// </summary>
    internal static string? Mismatch(Identity.Bootstrap.WorkloadIdentity proven, WorkloadResolution resolved)
    {
        var claimed = resolved.Workload!;
        if (proven.Namespace != claimed.Namespace || proven.ServiceAccount != claimed.ServiceAccount)
        {
            return $"the credential proves service account {proven.Namespace}/{proven.ServiceAccount}, but the stream claims pod {claimed.Namespace}/{resolved.Pod}, which runs as {claimed.Namespace}/{claimed.ServiceAccount}";
        }

        return proven.Pod is { } pod && pod != resolved.Pod
            ? $"the credential is bound to pod {proven.Namespace}/{pod}, but the stream claims pod {claimed.Namespace}/{resolved.Pod}"
            : null;
    }

    private void Handle(SidecarConnection connection, SnapshotRequest request)
    {
        var now = _time.GetUtcNow();
        var state = connection.State;
        if (request.ResponseNonce.Length == 0)
        {
            connection.RecordSeen(now);
            return;
        }

        if (request.ResponseNonce != state.SentNonce)
        {
            // Answers a snapshot that a newer one has replaced; the newer one's answer is what counts.
            _logger.StaleNonce(connection.InstanceId, request.ResponseNonce);
            connection.RecordSeen(now);
            return;
        }

        _metrics.PushLatency.Observe(_time.GetElapsedTime(state.SentTimestamp).TotalSeconds);
        if (request.ErrorDetail is { } error)
        {
            _metrics.Nacks.Inc();
            var message = string.IsNullOrEmpty(error.Message) ? $"NACK with code {error.Code} and no message" : error.Message;
            connection.RecordNack(new NackRecord(state.SentVersion, request.ResponseNonce, message, now));
            _logger.Nacked(connection.InstanceId, request.ResponseNonce, request.VersionInfo, message);
        }
        else
        {
            connection.RecordAck(request.VersionInfo, now);
        }

        SidecarsAnswered?.Invoke();
    }

    private async Task PushLoopAsync(SidecarConnection connection, IServerStreamWriter<Snapshot> writer, ServerCallContext context, CancellationToken cancellationToken)
    {
        try
        {
            while (await connection.Wakeups.WaitToReadAsync(cancellationToken))
            {
                connection.Wakeups.TryRead(out _);
                if (_resolver?.Resolve(connection.Node, context.GetHttpContext().Connection.RemoteIpAddress).Workload is { } current)
                {
                    connection.Workload = current; // its Pod's labels or service account changed; a vanished Pod leaves the last known
                }

                var snapshot = _cache.Get(_directory.Current, connection.Workload);
                if (snapshot.Version == connection.State.SentVersion)
                {
                    continue; // this change does not concern this workload
                }

                if (!await PushAsync(connection, snapshot, writer, context, cancellationToken))
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException)
        {
            // The stream is gone (reset, or the call already completed); the reader side ends it.
        }
    }

    /// <summary>
    /// One push. Its own method so that the message (and its resource list) is released once written, rather
    /// than held by the pusher's long-lived state machine for as long as the sidecar stays connected.
    /// False when the sidecar stopped reading and its stream was aborted.
    /// </summary>
    private async Task<bool> PushAsync(SidecarConnection connection, WorkloadSnapshot snapshot, IServerStreamWriter<Snapshot> writer, ServerCallContext context, CancellationToken cancellationToken)
    {
        var nonce = Interlocked.Increment(ref _nonce).ToString("x");
        var message = new Snapshot { VersionInfo = snapshot.Version, Nonce = nonce };
        message.Resources.AddRange(snapshot.Resources);
        connection.RecordSent(snapshot, nonce, _time.GetUtcNow(), _time.GetTimestamp());
        // Both limits on the injected clock: a push is not a request, so two token sources per push cost nothing that matters.
        using var writeTimer = new CancellationTokenSource(_writeTimeout, _time);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, writeTimer.Token);
        try
        {
            var slot = await TakePushSlotAsync(timeout.Token);
            try
            {
                await writer.WriteAsync(message, timeout.Token);
            }
            finally
            {
                if (slot)
                {
                    _pushSlots.Release();
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // A sidecar that stops reading would hold its snapshot (and our buffers) forever.
            _logger.PushTimedOut(connection.InstanceId, _writeTimeout.TotalSeconds);
            context.GetHttpContext().Abort();
            return false;
        }

        _metrics.Pushes.Inc();
        _logger.Pushed(snapshot.Version, nonce, snapshot.Resources.Count, connection.InstanceId);
        return true;
    }

    /// <summary>True with a slot taken (release it), false once <see cref="PushSlotWait"/> passed without one.</summary>
    private async Task<bool> TakePushSlotAsync(CancellationToken cancellationToken)
    {
        // SemaphoreSlim's own timeout runs on the wall clock; a token from the injected clock ends the wait instead.
        using var wait = new CancellationTokenSource(PushSlotWait, _time);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, wait.Token);
        try
        {
            await _pushSlots.WaitAsync(either.Token);
            return true;
        }
        catch (OperationCanceledException) when (wait.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }
}
