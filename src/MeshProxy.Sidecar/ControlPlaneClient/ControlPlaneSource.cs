using Google.Protobuf;
using MeshProxy.Api.V1;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RpcException = Grpc.Core.RpcException;
using StatusCode = Grpc.Core.StatusCode;

namespace MeshProxy.Sidecar.ControlPlaneClient;

/// <summary>
/// Control-plane mode: one StreamSnapshots stream, kept open for the life of the sidecar. Each pushed
/// snapshot is translated, applied and ACKed, or NACKed with the error while the last good one keeps
/// serving. The stream is re-opened with exponential backoff and jitter whenever it ends; meanwhile
/// the sidecar serves what it has. Every applied snapshot is saved to a file so that a restart during
/// an outage starts serving at once (marked stale until the control plane confirms it).
/// </summary>
internal sealed class ControlPlaneSource : IConfigSource, IHostedService, IAsyncDisposable
{
    private readonly SidecarResource _bootstrap;
    private readonly Uri _address;
    private readonly string _snapshotPath;
    private readonly SnapshotStore _store;
    private readonly ISnapshotActivator _activator;
    private readonly ControlPlaneClientOptions _options;
    private readonly ControlPlaneTls _tls;
    private readonly ControlPlaneCredentials _credentials;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Node _node;
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    private int _disposed;

    public ControlPlaneSource(
        SidecarResource bootstrap, string bootstrapPath, SnapshotStore store, ISnapshotActivator activator, ControlPlaneClientOptions options,
        ControlPlaneTls tls, ControlPlaneCredentials credentials, TimeProvider time, ILogger<ControlPlaneSource> logger)
    {
        var controlPlane = bootstrap.Spec.ControlPlane ?? throw new ArgumentException("the Sidecar resource names no control plane", nameof(bootstrap));
        _bootstrap = bootstrap;
        _address = new Uri(controlPlane.Address);
        _snapshotPath = controlPlane.SnapshotPath is { } p
            ? Path.GetFullPath(p, Path.GetDirectoryName(Path.GetFullPath(bootstrapPath))!)
            : Path.GetFullPath(bootstrapPath) + ".snapshot";
        _store = store;
        _activator = activator;
        _options = options;
        _tls = tls;
        _credentials = credentials;
        _time = time;
        _logger = logger;
        var workload = bootstrap.Spec.Workload;
        _node = new Node
        {
            Workload = workload.Name,
            Namespace = workload.Namespace,
            ServiceAccount = workload.ServiceAccount,
            InstanceId = $"{Environment.GetEnvironmentVariable("POD_NAME") ?? $"{workload.Name}-{Convert.ToHexStringLower(Guid.NewGuid().ToByteArray())[..6]}"}.{workload.Namespace}",
            ProxyVersion = typeof(ControlPlaneSource).Assembly.GetName().Version?.ToString() ?? "0",
        };
        foreach (var (key, value) in workload.Labels)
        {
            _node.Labels[key] = value;
        }
    }

    public string SnapshotPath => _snapshotPath;

    public string InstanceId => _node.InstanceId;

    /// <summary>
    /// Raised when a stream delivers its first snapshot: the control plane answers again, so a certificate
    /// request waiting out its backoff can go at once (see <see cref="Hosting.ControlPlaneIdentity"/>).
    /// </summary>
    public event Action? Connected;

    /// <summary>The saved snapshot if there is a usable one (stale), else the provisional bootstrap-only one.</summary>
    public void LoadInitial()
    {
        if (File.Exists(_snapshotPath))
        {
            try
            {
                var saved = Snapshot.Parser.ParseFrom(File.ReadAllBytes(_snapshotPath));
                var snapshot = SnapshotTranslator.Translate(saved, _bootstrap, _snapshotPath, _time.GetUtcNow());
                _activator.Activate(snapshot.Restamp(stale: true, provisional: false));
                _logger.ServingSaved(snapshot.Version, _snapshotPath);
                return;
            }
            catch (Exception ex) when (ex is InvalidProtocolBufferException or ConfigException or IOException)
            {
                _logger.SavedUnusable(_snapshotPath, ex.Message);
            }
        }

        var provisional = SnapshotBuilder.Build(new ParseResult([_bootstrap], [], []), string.Empty, _address.ToString(), _time.GetUtcNow());
        _activator.Activate(provisional.Restamp(stale: false, provisional: true));
        _logger.WaitingForFirstSnapshot(_address.ToString());
    }

    public void StartWatching() => _loop ??= Task.Run(() => RunAsync(_stop.Token));

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        await _stop.CancelAsync();
        if (_loop is not null)
        {
            await _loop.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>Idempotent: the container may hold this instance under several service types.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _stop.Dispose();
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var attempt = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            string error;
            try
            {
                if (await StreamOnceAsync(cancellationToken))
                {
                    attempt = 0; // it worked for a while: the next failure starts the backoff afresh
                }

                error = "stream ended by the control plane";
            }
            catch (Exception ex) when (ex is OperationCanceledException or RpcException && cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException ex)
            {
                error = $"{ex.StatusCode}: {ex.Status.Detail}";
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException or InvalidOperationException or OperationCanceledException)
            {
                error = ex.Message;
            }

            var delay = _options.Backoff(attempt++, Random.Shared);
            _logger.StreamFailed(_address.ToString(), error, _store.Current.Version, (long)delay.TotalMilliseconds);
            try
            {
                await Task.Delay(delay, _time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>One stream, until it ends. True if at least one snapshot arrived on it.</summary>
    private async Task<bool> StreamOnceAsync(CancellationToken cancellationToken)
    {
        _logger.Connecting(_address.ToString(), _node.InstanceId);
        // A fresh channel (and connection) per stream: a connection that keepalive found dead is never reused, and
        // the credential is chosen again (the token until the first SVID, then the SVID).
        var certificate = _credentials.Certificate();
        var headers = await _credentials.HeadersAsync(certificate is not null, cancellationToken);
        using var channel = ControlPlaneChannel.Create(_address, _tls, _options, certificate);
        using var call = new ConfigDiscovery.ConfigDiscoveryClient(channel).StreamSnapshots(headers, cancellationToken: cancellationToken);

        // What we serve (saved or pushed earlier) is announced, so the control plane's status is right from the start.
        var current = _store.Current;
        await call.RequestStream.WriteAsync(new SnapshotRequest { Node = _node, VersionInfo = current.Provisional ? string.Empty : current.Version }, cancellationToken);
        var received = false;
        while (await call.ResponseStream.MoveNext(cancellationToken))
        {
            if (!received)
            {
                received = true;
                Connected?.Invoke();
            }

            await call.RequestStream.WriteAsync(Apply(call.ResponseStream.Current), cancellationToken);
        }

        return received;
    }

    private SnapshotRequest Apply(Snapshot pushed)
    {
        var now = _time.GetUtcNow();
        var current = _store.Current;
        try
        {
            var snapshot = SnapshotTranslator.Translate(pushed, _bootstrap, _address.ToString(), now, w => _logger.SnapshotWarning(w.ToString()));
            _activator.Activate(snapshot);
            Save(pushed);
            _logger.SnapshotAcked(pushed.VersionInfo, pushed.Nonce, pushed.Resources.Count);
            return new SnapshotRequest { VersionInfo = pushed.VersionInfo, ResponseNonce = pushed.Nonce };
        }
        catch (ConfigException ex)
        {
            _store.Reject(new ConfigRejection(pushed.VersionInfo, now, ex.Errors));
            var kept = current.Provisional ? string.Empty : current.Version;
            _logger.SnapshotNacked(pushed.VersionInfo, pushed.Nonce, kept, ex.Message);
            return new SnapshotRequest
            {
                VersionInfo = kept,
                ResponseNonce = pushed.Nonce,
                ErrorDetail = new Status { Code = (int)StatusCode.InvalidArgument, Message = string.Join("; ", ex.Errors) },
            };
        }
    }

    /// <summary>Written aside and renamed over, so a crash mid-write never leaves a torn file to restart from.</summary>
    private void Save(Snapshot pushed)
    {
        // All of it but the nonce (which belongs to one stream), so a field added to Snapshot later is saved too.
        var saved = pushed.Clone();
        saved.Nonce = string.Empty;
        var temp = _snapshotPath + ".tmp";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_snapshotPath)!);
            File.WriteAllBytes(temp, saved.ToByteArray());
            File.Move(temp, _snapshotPath, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _logger.SaveFailed(_snapshotPath, ex.Message);
        }
    }
}
