using MeshProxy.Identity.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MeshProxy.Identity;

public sealed record SvidRotatorOptions
{
    /// <summary>Spread of the renewal point around half-life, as a fraction of the half-life (0.1 = ±10%).</summary>
    public double RenewalJitter { get; init; } = 0.1;

    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Upper bound of one retry delay, jitter included.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Spread of each retry delay (0.2 = ±20%) so that sidecars restarted together do not retry together.</summary>
    public double BackoffJitter { get; init; } = 0.2;
}

/// <summary>
/// Keeps <see cref="SvidStore"/> supplied: fetches the first SVID at once, then renews each one at its
/// half-life (±jitter), with a fresh key every time. A failed renewal is retried with bounded, jittered
/// exponential backoff; the current SVID stays in use meanwhile.
/// </summary>
public sealed class SvidRotator
{
    private readonly SvidStore _store;
    private readonly SpiffeId _id;
    private readonly Func<string, CancellationToken, Task<IssuedCertificate>> _issue;
    private readonly SvidRotatorOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly PeerCertificateVerifier _verifier;
    private readonly HashSet<SpiffeId> _self;

    // True from the renewal point (or the start, without an SVID) until a renewal succeeds: what RenewNowIfDue asks.
    // A flag rather than a comparison with the planned time, which Task.Delay rounds to whole milliseconds.
    private volatile bool _renewing;

    // Completed by RenewNowIfDue to cut a retry's backoff short; replaced once consumed.
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <param name="issue">Sends a CSR (PEM) to the CA and returns what it issued; the gRPC call in the sidecar.</param>
    public SvidRotator(
        SvidStore store,
        SpiffeId id,
        Func<string, CancellationToken, Task<IssuedCertificate>> issue,
        SvidRotatorOptions? options = null,
        TimeProvider? time = null,
        ILogger<SvidRotator>? logger = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _id = id ?? throw new ArgumentNullException(nameof(id));
        _issue = issue ?? throw new ArgumentNullException(nameof(issue));
        _options = options ?? new SvidRotatorOptions();
        _time = time ?? TimeProvider.System;
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _verifier = new PeerCertificateVerifier(_time);
        _self = [id];
    }

    /// <summary>Runs until <paramref name="cancellationToken"/> is cancelled (then completes without throwing).</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            // An SVID already in the store (one saved before a restart) is renewed on its own schedule.
            var delay = _store.Current is { } current ? NextRenewal(current) : TimeSpan.Zero;
            while (true)
            {
                await Task.Delay(delay, _time, cancellationToken);
                var svid = await RenewWithRetryAsync(cancellationToken);
                delay = NextRenewal(svid);
                Log.Rotated(_logger, _id.Value, svid.Certificate.SerialNumber, svid.NotAfter, delay);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// The CA is reachable again (the sidecar's config stream came back): if there is no SVID yet or its
    /// renewal time has passed, the next request goes now instead of at the end of its backoff, which may
    /// be up to <see cref="SvidRotatorOptions.MaxBackoff"/> away. Before the renewal time it does nothing:
    /// a fleet reconnecting together must not all ask for certificates they do not need yet.
    /// </summary>
    public void RenewNowIfDue()
    {
        if (_renewing || _store.Current is null)
        {
            Volatile.Read(ref _wake).TrySetResult();
        }
    }

    private TimeSpan NextRenewal(X509Svid svid) =>
        RenewalDelay(svid.NotBefore, svid.NotAfter, _time.GetUtcNow(), _options.RenewalJitter, Random.Shared.NextDouble());

    private async Task<X509Svid> RenewWithRetryAsync(CancellationToken cancellationToken)
    {
        ConsumeWake(); // a wake-up from before this renewal is answered by its first attempt
        _renewing = true;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                var svid = await RenewOnceAsync(cancellationToken);
                _renewing = false;
                return svid;
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                var delay = Backoff(attempt, _options, Random.Shared.NextDouble());
                Log.RenewalFailed(_logger, ex, _id.Value, attempt, delay);
                await BackoffAsync(delay, cancellationToken);
            }
        }
    }

    /// <summary>Waits out a retry's backoff, or less if <see cref="RenewNowIfDue"/> is called (also if it was during the attempt).</summary>
    private async Task BackoffAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        var wake = Volatile.Read(ref _wake);
        using (var sleep = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            await Task.WhenAny(Task.Delay(delay, _time, sleep.Token), wake.Task);
            await sleep.CancelAsync(); // releases the timer when the wake-up came first
        }

        cancellationToken.ThrowIfCancellationRequested();
        ConsumeWake();
    }

    private void ConsumeWake()
    {
        if (Volatile.Read(ref _wake).Task.IsCompleted)
        {
            Volatile.Write(ref _wake, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        }
    }

    private async Task<X509Svid> RenewOnceAsync(CancellationToken cancellationToken)
    {
        using var key = WorkloadKey.Create();
        var issued = await _issue(key.CreateSigningRequestPem(_id), cancellationToken);
        var svid = X509Svid.Create(key, issued.CertificateChainPem, _id);
        var bundle = TrustBundle.FromPem(issued.TrustBundlePem);

        if (_verifier.VerifyOwn(svid, bundle, _id.TrustDomain, _self) is { } refused)
        {
            throw new InvalidOperationException($"the CA returned a certificate peers would refuse: {refused.Result}");
        }

        _store.Update(svid, bundle);
        return svid;
    }

    /// <summary>Time until notBefore + lifetime/2 × (1 + jitter × (2·random − 1)); zero if that moment has passed.</summary>
    internal static TimeSpan RenewalDelay(DateTimeOffset notBefore, DateTimeOffset notAfter, DateTimeOffset now, double jitter, double random)
    {
        var halfLife = (notAfter - notBefore) / 2;
        var target = notBefore + (halfLife * (1 + (jitter * ((2 * random) - 1))));
        var delay = target - now;
        return delay > TimeSpan.Zero ? delay : TimeSpan.Zero;
    }

    /// <summary>InitialBackoff × 2^(attempt−1), spread by ±BackoffJitter, never above MaxBackoff.</summary>
    internal static TimeSpan Backoff(int attempt, SvidRotatorOptions options, double random)
    {
        var exponent = Math.Min(attempt - 1, 30);
        var baseDelay = options.InitialBackoff * Math.Pow(2, exponent);
        if (baseDelay > options.MaxBackoff)
        {
            baseDelay = options.MaxBackoff;
        }

        var jittered = baseDelay * (1 + (options.BackoffJitter * ((2 * random) - 1)));
        return jittered > options.MaxBackoff ? options.MaxBackoff : jittered;
    }
}
