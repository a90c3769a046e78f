using MeshProxy.Api.V1;
using Grpc.Core;
using Grpc.Net.Client;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;
using MeshProxy.Sidecar.ControlPlaneClient;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Identity;

/// <summary>Timing of the CA client (tests shorten them).</summary>
internal sealed record CertificateAuthorityClientOptions
{
    /// <summary>Lifetime asked for; null sends 0, which means the mesh default (MeshConfig certificateTtl).</summary>
    public TimeSpan? RequestedTtl { get; init; }

    /// <summary>Deadline of one CreateCertificate call.</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public SvidRotatorOptions Rotation { get; init; } = new();
}

/// <summary>
/// Control-plane mode's identity source. The key is made here and never leaves the process: each renewal
/// makes a fresh key and sends only its CSR to Certificates/CreateCertificate, with the workload's bootstrap
/// token (read from <c>controlPlane.tokenFile</c> at every call, so a rotated projected token is picked up).
/// <see cref="SvidRotator"/> renews at half-life ±10 % and retries with jittered backoff while the CA is
/// away; the current SVID keeps serving meanwhile. Fills the one <see cref="SvidStore"/> the listeners use.
/// </summary>
internal sealed class CertificateAuthorityClient : IHostedService, IAsyncDisposable
{
    private readonly SvidStore _store;
    private readonly SpiffeId _id;
    private readonly string _tokenFile;
    private readonly CertificateAuthorityClientOptions _options;
    private readonly TimeProvider _time;
    private readonly GrpcChannel _channel;
    private readonly Certificates.CertificatesClient _client;
    private readonly SvidRotator _rotator;
    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private Task _run = Task.CompletedTask;

    public CertificateAuthorityClient(
        ControlPlaneSpec controlPlane, string bootstrapPath, SpiffeId id, SvidStore store,
        CertificateAuthorityClientOptions options, TimeProvider time, ILoggerFactory loggers, ControlPlaneClient.ControlPlaneTls? tls = null)
    {
        ArgumentNullException.ThrowIfNull(controlPlane);
        _store = store;
        _id = id;
        _options = options;
        _time = time;
        var tokenFile = controlPlane.TokenFile ?? throw new ArgumentException("controlPlane.tokenFile is required to obtain a certificate from the control plane's CA", nameof(controlPlane));
        _tokenFile = Path.GetFullPath(tokenFile, Path.GetDirectoryName(Path.GetFullPath(bootstrapPath))!);
        // The same pinned trust as the config stream: caFile only, the control plane's SPIFFE ID, TLS 1.2+.
        _channel = ControlPlaneChannel.Create(new Uri(controlPlane.Address), tls, new ControlPlaneClientOptions());
        _client = new Certificates.CertificatesClient(_channel);
        _rotator = new SvidRotator(store, id, IssueAsync, options.Rotation, time, loggers.CreateLogger<SvidRotator>());
        store.Changed += (_, _) => _first.TrySetResult();
    }

    public SpiffeId SpiffeId => _id;

    /// <summary>Completes when the first SVID is in the store (readiness waits for it).</summary>
    public Task FirstCertificate => _first.Task;

    /// <summary>Seconds until the current SVID expires (negative once it has), or null before the first one.</summary>
    public double? SecondsToExpiry => _store.NotAfter is { } notAfter ? (notAfter - _time.GetUtcNow()).TotalSeconds : null;

    /// <summary>The control plane answers again: ask now if the SVID is missing or due (see <see cref="SvidRotator.RenewNowIfDue"/>).</summary>
    public void RenewNowIfDue() => _rotator.RenewNowIfDue();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _run = _rotator.RunAsync(_stop.Token);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stop.CancelAsync();
        await _run.WaitAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _run;
        _stop.Dispose();
        _channel.Dispose();
    }

    private async Task<IssuedCertificate> IssueAsync(string csrPem, CancellationToken cancellationToken)
    {
        var token = await ControlPlaneCredentials.ReadTokenAsync(_tokenFile, cancellationToken);
        CreateCertificateResponse response;
        try
        {
            response = await _client.CreateCertificateAsync(
                new CreateCertificateRequest { CsrPem = csrPem, ValiditySeconds = (long)(_options.RequestedTtl?.TotalSeconds ?? 0) },
                new CallOptions(
                    headers: new Metadata { { "authorization", "Bearer " + token } },
                    deadline: (_time.GetUtcNow() + _options.CallTimeout).UtcDateTime,
                    cancellationToken: cancellationToken));
        }
        catch (RpcException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping, not failing: the rotator ends quietly on cancellation, and retries anything else.
            throw new OperationCanceledException(cancellationToken);
        }

        // SvidRotator checks the answer (key, SPIFFE ID, chain to the bundle, both roles) before installing it.
        return new IssuedCertificate(string.Join('\n', response.CertChainPem), string.Join('\n', response.TrustBundlePem));
    }
}
