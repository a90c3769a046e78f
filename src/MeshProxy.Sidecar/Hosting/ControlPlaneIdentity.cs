using MeshProxy.Config.Resources;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.ControlPlaneClient;
using MeshProxy.Sidecar.Identity;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Hosting;

/// <summary>
/// Control-plane mode's identity: the CA client, started once the trust domain is known. The SPIFFE ID
/// the CA will sign is <c>spiffe://&lt;trustDomain&gt;/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c> and the trust domain is
/// the mesh's (MeshConfig, pushed with the first snapshot, or the saved one), so the request waits for
/// a real snapshot instead of guessing a domain the CA would refuse. <see cref="SidecarIdentity.Enable"/>
/// is called at build time (see <see cref="SidecarHost"/>), so until the first SVID mesh traffic is refused,
/// never served in plaintext. A still-valid SVID saved before a restart (<see cref="SavedIdentity"/>) is that
/// first SVID, so a sidecar restarted during a control-plane outage serves at once.
/// </summary>
internal sealed class ControlPlaneIdentity : IHostedService, IAsyncDisposable
{
    private readonly SidecarResource _sidecar;
    private readonly string _bootstrapPath;
    private readonly SidecarIdentity _identity;
    private readonly SnapshotStore _snapshots;
    private readonly CertificateAuthorityClientOptions _options;
    private readonly ControlPlaneTls _tls;
    private readonly ControlPlaneSource _source;
    private readonly SavedIdentity _saved;
    private readonly TimeProvider _time;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<SidecarSnapshot> _firstSnapshot = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private volatile CertificateAuthorityClient? _client;
    private Task _run = Task.CompletedTask;
    private int _disposed;

    public ControlPlaneIdentity(
        SidecarResource sidecar, string bootstrapPath, SidecarIdentity identity, SnapshotStore snapshots,
        CertificateAuthorityClientOptions options, ControlPlaneTls tls, ControlPlaneSource source, PeerCertificateVerifier verifier,
        TimeProvider time, ILoggerFactory loggers)
    {
        _sidecar = sidecar;
        _bootstrapPath = bootstrapPath;
        _identity = identity;
        _snapshots = snapshots;
        _options = options;
        _tls = tls;
        _time = time;
        _loggers = loggers;
        _logger = loggers.CreateLogger<ControlPlaneIdentity>();
        _source = source;
        _saved = new SavedIdentity(source.SnapshotPath, identity.Store, verifier, _logger);
        identity.Store.Changed += OnStoreChanged;
        snapshots.Applied += OnApplied;
        source.Connected += OnConnected;
    }

    /// <summary>Completes when the first SVID from the CA is in the store; readiness waits for it.</summary>
    public Task FirstCertificate => _first.Task;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_snapshots.HasSnapshot)
        {
            _firstSnapshot.TrySetResult(_snapshots.Current);
        }

        _run = RunAsync(_stop.Token);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        await _stop.CancelAsync();
        await _run.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_client is not null)
        {
            await _client.StopAsync(cancellationToken);
        }
    }

    /// <summary>Idempotent: the container holds this instance as itself and as a hosted service.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _identity.Store.Changed -= OnStoreChanged;
        _snapshots.Applied -= OnApplied;
        _source.Connected -= OnConnected;
        await _stop.CancelAsync();
        await _run.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_client is not null)
        {
            await _client.DisposeAsync();
        }

        _stop.Dispose();
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var snapshot = await _firstSnapshot.Task.WaitAsync(cancellationToken);
        var workload = _sidecar.Spec.Workload;
        var id = SpiffeId.ForWorkload(snapshot.Mesh.TrustDomain, workload.Namespace, workload.ServiceAccount);
        var controlPlane = _sidecar.Spec.ControlPlane!;
        _saved.TryRestore(id); // before the listeners start (this runs synchronously when a snapshot was saved)
        _logger.RequestingCertificate(id.Value, controlPlane.Address);
        _client = new CertificateAuthorityClient(controlPlane, _bootstrapPath, id, _identity.Store, _options, _time, _loggers, _tls);
        await _client.StartAsync(cancellationToken);
    }

    private void OnApplied(SidecarSnapshot snapshot)
    {
        if (!snapshot.Provisional)
        {
            _firstSnapshot.TrySetResult(snapshot);
        }
    }

    private void OnConnected() => _client?.RenewNowIfDue();

    private void OnStoreChanged(object? sender, EventArgs e)
    {
        _saved.Save();
        if (_identity.Store.Current is { } svid && _first.TrySetResult() && !_saved.IsRestored(svid))
        {
            _logger.SvidLoaded(svid.SpiffeId.Value, "the control plane's CA", svid.Certificate.SerialNumber, svid.NotAfter, _identity.Store.TrustBundle?.Roots.Length ?? 0);
        }
    }
}
