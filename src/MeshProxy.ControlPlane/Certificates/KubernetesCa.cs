using System.Net;
using System.Security.Cryptography;
using k8s;
using k8s.Autorest;
using k8s.Models;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>Where Kubernetes mode keeps the CA (<c>--ca-secret</c>), and how often replicas look.</summary>
internal sealed record KubernetesCaOptions
{
    /// <summary>The Secret holding the self-managed root; the Lease that guards writing it has the same name.</summary>
    public string SecretName { get; init; } = "meshproxy-ca";

    /// <summary>Istio's plug-in CA Secret; when it exists at start-up it is the CA and nothing is generated; created later, it is switched to.</summary>
    public string PluginSecretName { get; init; } = "cacerts";

    public string LeaseName => SecretName;

    /// <summary>The control plane's own namespace (POD_NAMESPACE, else the service account's namespace file).</summary>
    public string Namespace { get; init; } = DefaultNamespace();

    /// <summary>This replica's holderIdentity: its pod name (or host name) and a random suffix, unique per process.</summary>
    public string Identity { get; init; } = DefaultIdentity();

    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How often each replica reads the Secret again (and the leader renews the Lease and steps a rotation).</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a replica keeps signing with what it last read when it cannot read the Secret any more. Past it, CSRs
    /// are UNAVAILABLE (the sidecar retries, maybe on another replica): a replica cut off must not keep signing with a
    /// root and bundle the others have moved past. A rotation's phases wait this long on top of the longest certificate.
    /// </summary>
    public TimeSpan ViewTtl { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long one round's API calls may take (on the control plane's clock): a hung connection must not stall the loop.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The clock of the rotation's schedule (phase waits, the Lease, the refresh loop, the view's age); null: the control
    /// plane's, which also signs. Apart only in tests whose real sidecar processes judge certificates by the wall clock
    /// while the schedule runs faster, with certificate lifetimes shortened by at least as much.
    /// </summary>
    public TimeProvider? Clock { get; init; }

    public static string DefaultNamespace()
    {
        const string ServiceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
        if (Environment.GetEnvironmentVariable("POD_NAMESPACE") is { Length: > 0 } ns)
        {
            return ns;
        }

        try
        {
            return File.Exists(ServiceAccountNamespace) ? File.ReadAllText(ServiceAccountNamespace).Trim() : "meshproxy-system";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return "meshproxy-system";
        }
    }

    private static string DefaultIdentity() =>
        $"{(Environment.GetEnvironmentVariable("POD_NAME") is { Length: > 0 } pod ? pod : Environment.MachineName)}_{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
}

/// <summary>
/// Kubernetes mode's CA key material, shared by every replica through the API server and never written to disk:
/// <list type="bullet">
/// <item>Istio's plug-in CA when Secret <c>cacerts</c> exists at start-up (read, never written);</item>
/// <item>else the self-managed root in Secret <c>meshproxy-ca</c>: created once, by the replica holding the Lease of that
/// name (a create answered 409 AlreadyExists means another won: its Secret is read), and rotated by the Lease holder in
/// three phases (<see cref="CaSecrets.NextStep"/>), each an update carrying the resourceVersion it read.</item>
/// <item>A <c>cacerts</c> created while the self-managed root signs is switched to in the same three phases (its roots
/// join the bundle; it signs; the old root leaves the bundle), recorded in <c>meshproxy-ca</c>, after which every
/// replica follows <c>cacerts</c> alone, as if it had been there at start-up.</item>
/// </list>
/// Each replica reads the Secret every <see cref="KubernetesCaOptions.RefreshInterval"/> and signs with what it holds;
/// when it could not read it for <see cref="KubernetesCaOptions.ViewTtl"/> it stops signing (<see cref="Unavailable"/>),
/// so a replica that lost the API server (and with it the Lease) never signs with a root or bundle the others left.
/// </summary>
internal sealed class KubernetesCa : IDisposable
{
    private readonly IKubernetes _client;
    private readonly KubernetesCaOptions _options;
    private readonly Func<MeshConfigSpec> _mesh;
    private readonly TimeSpan _clockSkew;
    private readonly TimeProvider _time;
    private readonly TimeProvider _schedule;
    private readonly ILogger<KubernetesCa> _logger;
    private readonly CaLease _lease;
    private readonly CancellationTokenSource _stop = new();
    private volatile CaPem _current = null!;
    private long _lastRead;
    private bool _plugin;

    private KubernetesCa(IKubernetes client, KubernetesCaOptions options, Func<MeshConfigSpec> mesh, TimeSpan clockSkew, TimeProvider time, ILogger<KubernetesCa> logger)
    {
        _client = client;
        _options = options;
        _mesh = mesh;
        _clockSkew = clockSkew;
        _time = time;
        _schedule = options.Clock ?? time;
        _logger = logger;
        _lease = new CaLease(client, options, _schedule);
    }

    /// <summary>What this replica signs with now.</summary>
    public CaPem Current => _current;

    /// <summary>Raised (on the refresh loop) when the Secret's content changed: a rotation step, a new plug-in CA.</summary>
    public event Action? Changed;

    /// <summary>Whether this replica holds the Lease (it alone writes the Secret).</summary>
    public bool IsLeader => _lease.Held;

    /// <summary>Null while this replica's view of the Secret is fresh; otherwise why it must not sign now.</summary>
    public string? Unavailable
    {
        get
        {
            var age = _schedule.GetElapsedTime(Volatile.Read(ref _lastRead));
            return age <= _options.ViewTtl ? null
                : $"ca_unavailable: this control plane could not read its CA Secret {_options.Namespace}/{(_plugin ? _options.PluginSecretName : _options.SecretName)} for {age.TotalSeconds:0} s, so it may be behind a root rotation; retry (another replica may answer)";
        }
    }

    /// <summary>
    /// Finds the CA (plug-in, or the shared root, creating it under the Lease if nobody has) and starts following it.
    /// A missing root while another replica holds the Lease is waited for (that replica is creating it).
    /// </summary>
    /// <exception cref="CertificateAuthorityException">The plug-in CA Secret or the root Secret is malformed.</exception>
    public static async Task<KubernetesCa> StartAsync(IKubernetes client, KubernetesCaOptions options, Func<MeshConfigSpec> mesh, TimeSpan clockSkew, TimeProvider time, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        var ca = new KubernetesCa(client, options, mesh, clockSkew, time, loggers.CreateLogger<KubernetesCa>());
        ca._current = await ca.FirstAsync(cancellationToken).ConfigureAwait(false);
        _ = ca.RunAsync(ca._stop.Token);
        return ca;
    }

    public void Dispose()
    {
        _stop.Cancel();
        _lease.Forget();
    }

    private async Task<CaPem> FirstAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                var plugin = await GetAsync(_options.PluginSecretName, cancellationToken).ConfigureAwait(false);
                var secret = await GetAsync(_options.SecretName, cancellationToken).ConfigureAwait(false);
                var root = secret is null ? null : CaSecrets.ReadRoot(secret);
                if (plugin is not null && root is null or { Phase: RotationPhase.Plugin })
                {
                    // A mesh that started on the plug-in CA, or finished switching to it: cacerts alone from here on.
                    _plugin = true;
                    var pem = CaSecrets.ReadPlugin(plugin);
                    MarkRead();
                    _logger.PluginCaFound(CaSecrets.Name(plugin));
                    return pem;
                }

                if (secret is not null)
                {
                    // The self-managed root, or a switch to a plug-in CA under way (the root Secret says where it stands).
                    MarkRead();
                    return root!.ToPem(CaSecrets.Name(secret), plugin is null ? null : CaSecrets.ReadPlugin(plugin));
                }

                if (await _lease.TryAcquireAsync(cancellationToken).ConfigureAwait(false))
                {
                    return await CreateRootAsync(cancellationToken).ConfigureAwait(false);
                }

                _logger.WaitingForRoot(_options.Namespace, _options.SecretName, _options.LeaseName);
            }
            catch (Exception ex) when (IsTransient(ex))
            {
                _logger.CaSecretUnreadable(_options.Namespace, _options.SecretName, Describe(ex));
            }

            await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(250 << Math.Min(attempt, 5), 5000)), _schedule, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<CaPem> CreateRootAsync(CancellationToken cancellationToken)
    {
        var (cert, key) = NewRoot();
        var state = new CaRootState(cert, key, RotationPhase.None, DateTimeOffset.MinValue, null, null, null, false);
        var body = CaSecrets.Write(new V1ObjectMeta { Name = _options.SecretName, NamespaceProperty = _options.Namespace }, state);
        try
        {
            var created = await _client.CoreV1.CreateNamespacedSecretAsync(body, _options.Namespace, cancellationToken: cancellationToken).ConfigureAwait(false);
            MarkRead();
            _logger.RootCreated(CaSecrets.Name(created), _options.Identity);
            return state.ToPem(CaSecrets.Name(created));
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.Conflict)
        {
            // AlreadyExists: another replica created it in the meantime (its Lease expired under it, or clocks disagree).
            // Its root is the mesh's root; ours is dropped unseen.
            var winner = await GetAsync(_options.SecretName, cancellationToken).ConfigureAwait(false)
                ?? throw new CertificateAuthorityException($"Secret {_options.Namespace}/{_options.SecretName} already exists but cannot be read");
            MarkRead();
            return CaSecrets.ReadRoot(winner).ToPem(CaSecrets.Name(winner));
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                await Task.Delay(_options.RefreshInterval, _schedule, cancellationToken).ConfigureAwait(false);
                await RefreshAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>One round: renew or take the Lease, read the Secret, and as leader take the rotation's next step.</summary>
    internal async Task RefreshAsync(CancellationToken stopping)
    {
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _schedule);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, timeout.Token);
        var cancellationToken = linked.Token;
        try
        {
            var leader = false;
            try
            {
                leader = !_plugin && await _lease.TryAcquireAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsTransient(ex) || (ex is OperationCanceledException && timeout.IsCancellationRequested && !stopping.IsCancellationRequested))
            {
                // Not the leader this round; reading the Secret (and so signing) does not depend on the Lease.
                _logger.LeaseUnavailable(_options.Namespace, _options.LeaseName, Describe(ex));
            }

            var secret = await GetAsync(_plugin ? _options.PluginSecretName : _options.SecretName, cancellationToken).ConfigureAwait(false);
            if (secret is null)
            {
                // Deleted under us: keep signing with what we have rather than invent a new root (never while running).
                // The API server answered, so this view is current, not stale: every replica reads the same absence and
                // holds the same last root, and no rotation step can be taken without the Secret. Counting it as read
                // keeps issuance up (a stale view would stop it after ViewTtl, and every renewal with it).
                MarkRead();
                _logger.CaSecretMissing(_options.Namespace, _plugin ? _options.PluginSecretName : _options.SecretName);
                return;
            }

            CaPem pem;
            CaRootState? state = null;
            CaPem? plugin = null;
            try
            {
                if (_plugin)
                {
                    pem = CaSecrets.ReadPlugin(secret);
                }
                else
                {
                    state = CaSecrets.ReadRoot(secret);
                    // A plug-in CA created while running is switched to with the rotation's steps (CaSecrets.NextStep).
                    plugin = await ReadPluginAsync(cancellationToken).ConfigureAwait(false);
                    pem = state.ToPem(CaSecrets.Name(secret), plugin);
                    if (state.Phase == RotationPhase.Plugin)
                    {
                        _plugin = true;
                        _logger.PluginCaFound(pem.Origin);
                    }
                }
            }
            catch (CertificateAuthorityException ex)
            {
                // An edit broke it: the current CA keeps signing; the view is not refreshed, so a lasting break stops issuance.
                _logger.CaSecretInvalid(CaSecrets.Name(secret), ex.Message);
                return;
            }

            MarkRead();
            Adopt(pem);
            if (leader && state is not null && !_plugin)
            {
                await StepAsync(secret, state, plugin?.RootsPem, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (IsTransient(ex) || (ex is OperationCanceledException && timeout.IsCancellationRequested && !stopping.IsCancellationRequested))
        {
            var error = ex is OperationCanceledException ? $"no answer within {_options.RequestTimeout.TotalSeconds:0.#} s" : Describe(ex);
            _logger.CaSecretUnreadable(_options.Namespace, _plugin ? _options.PluginSecretName : _options.SecretName, error);
        }
    }

    /// <summary>Secret cacerts as a plug-in CA now; null when absent, or when malformed (logged: the switch waits for a good one).</summary>
    private async Task<CaPem?> ReadPluginAsync(CancellationToken cancellationToken)
    {
        var secret = await GetAsync(_options.PluginSecretName, cancellationToken).ConfigureAwait(false);
        if (secret is null)
        {
            return null;
        }

        try
        {
            return CaSecrets.ReadPlugin(secret);
        }
        catch (CertificateAuthorityException ex)
        {
            _logger.CaSecretInvalid(CaSecrets.Name(secret), ex.Message);
            return null;
        }
    }

    private async Task StepAsync(V1Secret secret, CaRootState state, string? pluginRoots, CancellationToken cancellationToken)
    {
        var mesh = _mesh();
        // No certificate issued under the previous phase, by any replica however stale its view, outlives this.
        var wait = _options.ViewTtl + mesh.MaxCertificateTtl + _clockSkew + _options.RefreshInterval;
        var next = CaSecrets.NextStep(state, _schedule.GetUtcNow(), wait, NewRoot, pluginRoots);
        if (next is null)
        {
            return;
        }

        try
        {
            var written = await _client.CoreV1.ReplaceNamespacedSecretAsync(CaSecrets.Write(secret.Metadata, next), _options.SecretName, _options.Namespace, cancellationToken: cancellationToken).ConfigureAwait(false);
            _logger.RotationStep(CaSecrets.Name(written), next.Phase switch
            {
                RotationPhase.None when state.Phase == RotationPhase.PluginAdding => "none: the plug-in CA went away before the switch, the self-managed root signs on alone",
                RotationPhase.None => "done: the previous root left the bundle",
                RotationPhase.Adding => "adding: the next root joined the bundle",
                RotationPhase.Switched when state.Phase == RotationPhase.PluginSwitched =>
                    "switched back: cacerts is gone after the switch, so the self-managed root signs again; the plug-in's roots stay in the bundle until what it signed has expired",
                RotationPhase.Switched => "switched: the new root signs, the previous one stays in the bundle",
                RotationPhase.PluginAdding when state.Phase == RotationPhase.PluginSwitched =>
                    "plugin-adding again: cacerts changed its roots after the switch, so the self-managed root signs again, the bundle holds the plug-in's old and new roots, and the switch starts over",
                RotationPhase.PluginAdding => "plugin-adding: the plug-in CA's roots joined the bundle",
                RotationPhase.PluginSwitched => "plugin-switched: the plug-in CA signs, the self-managed root stays in the bundle",
                _ => "plugin: the self-managed root left the bundle; the plug-in CA alone from now on",
            }, _options.Identity);
            try
            {
                var pem = next.ToPem(CaSecrets.Name(written), next.Phase is RotationPhase.PluginSwitched or RotationPhase.Plugin ? await ReadPluginAsync(cancellationToken).ConfigureAwait(false) : null);
                _plugin = next.Phase == RotationPhase.Plugin;
                Adopt(pem);
            }
            catch (CertificateAuthorityException ex)
            {
                // cacerts went away between our read and our write: the next round reads both again.
                _logger.CaSecretInvalid(CaSecrets.Name(written), ex.Message);
            }
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.Conflict)
        {
            // The Secret changed since we read it (another replica stepped, or an operator edited it): read it next round.
            _logger.RotationStepConflict(CaSecrets.Name(secret));
        }
    }

    private void Adopt(CaPem pem)
    {
        if (_current.SameAs(pem))
        {
            return;
        }

        _current = pem;
        Changed?.Invoke();
    }

    private (string Cert, string Key) NewRoot()
    {
        var mesh = _mesh();
        return CertificateAuthority.GenerateRootPem(new CertificateAuthorityOptions { TrustDomain = mesh.TrustDomain, DefaultTtl = mesh.CertificateTtl, MaxTtl = mesh.MaxCertificateTtl, ClockSkewAllowance = _clockSkew }, _time);
    }

    private async Task<V1Secret?> GetAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            return await _client.CoreV1.ReadNamespacedSecretAsync(name, _options.Namespace, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    private void MarkRead() => Volatile.Write(ref _lastRead, _schedule.GetTimestamp());

    private static bool IsTransient(Exception ex) =>
        ex is HttpOperationException or HttpRequestException or IOException or System.Runtime.Serialization.SerializationException or System.Text.Json.JsonException or KubernetesException
            or TaskCanceledException { InnerException: TimeoutException };

    private static string Describe(Exception ex) => ex switch
    {
        HttpOperationException http => $"HTTP {(int)http.Response.StatusCode} {http.Response.ReasonPhrase}",
        _ when ex.InnerException is { } inner => $"{ex.Message} ({inner.Message})",
        _ => ex.Message,
    };
}
