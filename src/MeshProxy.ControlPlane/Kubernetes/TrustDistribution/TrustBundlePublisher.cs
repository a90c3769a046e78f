using System.Net;
using System.Threading.Channels;
using k8s;
using k8s.Autorest;
using k8s.Models;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Kubernetes.Informers;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes.TrustDistribution;

/// <summary>
/// Keeps the ConfigMap <c>meshproxy-ca-root-cert</c> (key <c>root-cert.pem</c>: every root of the CA's published
/// bundle, PEM) in every meshed namespace, as Istio keeps <c>istio-ca-root-cert</c>: the injector mounts it as the
/// sidecar's <c>controlPlane.caFile</c>, the only thing that vouches for the control plane on 15012.
/// <para>
/// <b>Meshed</b>: a namespace labelled <c>meshproxy-injection=enabled</c> or <c>meshproxy.io/rev</c> (the webhooks' namespaceSelectors: its
/// ConfigMap is there before the first pod), or one holding a pod the injector touched (annotation
/// <c>sidecar.meshproxy.io/status</c>: pods opted in by their own label in an unlabelled namespace; the kubelet holds
/// such a pod until the ConfigMap it mounts exists, then retries the mount). A namespace being deleted is left
/// alone (the API refuses creations there). A namespace that stops being meshed keeps its ConfigMap (pods may still
/// mount it; nothing here deletes, so RBAC grants no delete).
/// </para>
/// Driven by informers (namespaces, the pods the Kubernetes source already watches, and ConfigMaps of that name,
/// selected by the API server with a field selector): a change of any of them, or of the bundle, schedules one pass
/// that creates what is missing (a deleted ConfigMap comes back) and replaces what differs (an edited one, or every
/// one after a bundle change), with the resourceVersion read, so a concurrent writer (another replica) makes the
/// write fail with 409 and the next pass decides again. A pass with failures is retried with backoff (1 s doubling
/// to 1 min) on the injected clock. The CA's bundle changes (a rotation step, a new plug-in CA, a MeshConfig reload)
/// call <see cref="Schedule"/> as they happen (ControlPlaneHost wires them); a pass runs every <see cref="Resync"/>
/// anyway, as a safety net. Nothing is written before the three informers have listed once.
/// </summary>
internal sealed class TrustBundlePublisher : IAsyncDisposable
{
    /// <summary>The namespace label of the injection webhook's namespaceSelector (docker/kubernetes/webhook.yaml).</summary>
    public const string InjectionLabel = "meshproxy-injection";

    /// <summary>
    /// The namespace label that picks a control-plane revision's webhook (<c>meshproxy install --revision</c>): such a
    /// namespace is meshed too. Every revision signs with the one root (Secret meshproxy-ca), so any revision may write it.
    /// </summary>
    public const string RevisionLabel = "meshproxy.io/rev";

    /// <summary>The annotation the injector puts on every pod it injects (MeshProxy.Injection's Annotations.Status).</summary>
    public const string InjectedAnnotation = "sidecar.meshproxy.io/status";

    /// <summary>The label on the ConfigMaps written here (who made it, for an operator's kubectl get -l).</summary>
    public const string ManagedLabel = "meshproxy.io/trust-bundle";

    private static readonly TimeSpan MaxRetry = TimeSpan.FromMinutes(1);

    private readonly IKubernetes _client;
    private readonly Informer<V1Pod> _pods;
    private readonly Func<IReadOnlyList<string>> _bundle;
    private readonly ILogger _logger;
    private readonly Channel<byte> _due = Channel.CreateBounded<byte>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stop = new();
    private readonly ITimer _retry;
    private readonly ITimer _resync;
    private readonly List<Task> _running = [];
    private int _failedPasses;
    private int _passes;
    private volatile bool _inPass;

    public TrustBundlePublisher(IKubernetes client, Informer<V1Pod> pods, Func<IReadOnlyList<string>> bundle, InformerOptions informers, TimeProvider time, ILoggerFactory loggers)
    {
        _client = client;
        _pods = pods;
        _bundle = bundle;
        _logger = loggers.CreateLogger<TrustBundlePublisher>();
        var informerLogger = loggers.CreateLogger("MeshProxy.ControlPlane.Kubernetes.Informer");
        Namespaces = new Informer<V1Namespace>(client, KubernetesResource<V1Namespace>.Namespaces, informers, time, informerLogger);
        ConfigMaps = new Informer<V1ConfigMap>(client, KubernetesResource<V1ConfigMap>.ConfigMapsNamed(SidecarEnvironment.TrustBundleConfigMap), informers, time, informerLogger);
        _retry = time.CreateTimer(_ => Schedule(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _resync = time.CreateTimer(_ => Schedule(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>How often a pass runs without any event (a missed event, a write lost without an error is repaired within this).</summary>
    public static TimeSpan Resync { get; } = TimeSpan.FromSeconds(30);

    public Informer<V1Namespace> Namespaces { get; }

    public Informer<V1ConfigMap> ConfigMaps { get; }

    /// <summary>Raised after each pass in which every write that was due succeeded.</summary>
    public event Action? Passed;

    /// <summary>Passes run so far (with or without failures).</summary>
    internal int Passes => Volatile.Read(ref _passes);

    /// <summary>No pass running and none due: only a new trigger (an informer event, <see cref="Schedule"/>, a timer) writes again.</summary>
    internal bool Idle => !_inPass && _due.Reader.Count == 0;

    /// <summary>Starts the informers and the loop; the first pass runs once all three have listed.</summary>
    public void Start()
    {
        Namespaces.Changed += Schedule;
        ConfigMaps.Changed += Schedule;
        _pods.Changed += Schedule;
        _running.Add(Task.Run(() => Namespaces.RunAsync(_stop.Token), CancellationToken.None));
        _running.Add(Task.Run(() => ConfigMaps.RunAsync(_stop.Token), CancellationToken.None));
        _running.Add(Task.Run(RunAsync, CancellationToken.None));
        _resync.Change(Resync, Resync);
    }

    /// <summary>Something that decides what is written may have changed (an informer event, the bundle).</summary>
    public void Schedule() => _due.Writer.TryWrite(0);

    public async ValueTask DisposeAsync()
    {
        Namespaces.Changed -= Schedule;
        ConfigMaps.Changed -= Schedule;
        _pods.Changed -= Schedule;
        await _stop.CancelAsync().ConfigureAwait(false);
        await _retry.DisposeAsync().ConfigureAwait(false);
        await _resync.DisposeAsync().ConfigureAwait(false);
        await Task.WhenAll(_running).ConfigureAwait(false);
        _stop.Dispose();
    }

    /// <summary>The namespaces that must hold the ConfigMap now, from the informers' caches. Pure over its inputs.</summary>
    internal static SortedSet<string> Meshed(IEnumerable<V1Namespace> namespaces, IEnumerable<V1Pod> pods)
    {
        var live = new Dictionary<string, V1Namespace>(StringComparer.Ordinal);
        foreach (var ns in namespaces)
        {
            // Terminating: the API server refuses new objects in it (403), and it is going away anyway.
            if (ns.Metadata.DeletionTimestamp is null && ns.Status?.Phase != "Terminating")
            {
                live[ns.Metadata.Name] = ns;
            }
        }

        var meshed = new SortedSet<string>(
            live.Values.Where(ns => ns.Metadata.Labels?.TryGetValue(InjectionLabel, out var value) == true && value == "enabled"
                || ns.Metadata.Labels?.ContainsKey(RevisionLabel) == true).Select(ns => ns.Metadata.Name),
            StringComparer.Ordinal);
        foreach (var pod in pods)
        {
            if (pod.Metadata.Annotations?.ContainsKey(InjectedAnnotation) == true && pod.Metadata.NamespaceProperty is { } ns && live.ContainsKey(ns))
            {
                meshed.Add(ns);
            }
        }

        return meshed;
    }

    private async Task RunAsync()
    {
        try
        {
            await Task.WhenAll(Namespaces.Synced, ConfigMaps.Synced, _pods.Synced).WaitAsync(_stop.Token).ConfigureAwait(false);
            Schedule();
            while (await _due.Reader.WaitToReadAsync(_stop.Token).ConfigureAwait(false))
            {
                _inPass = true;
                _due.Reader.TryRead(out _);
                int failed;
                try
                {
                    failed = await PassAsync(_stop.Token).ConfigureAwait(false);
                }
                finally
                {
                    Interlocked.Increment(ref _passes);
                    _inPass = false;
                }

                if (failed == 0)
                {
                    _failedPasses = 0;
                    Passed?.Invoke();
                    continue;
                }

                _failedPasses++;
                var retry = TimeSpan.FromSeconds(Math.Min(MaxRetry.TotalSeconds, Math.Pow(2, Math.Min(_failedPasses - 1, 10))));
                _retry.Change(retry, Timeout.InfiniteTimeSpan);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>One pass over every meshed namespace; the number of writes that failed.</summary>
    private async Task<int> PassAsync(CancellationToken cancellationToken)
    {
        var bundle = _bundle();
        var pem = string.Concat(bundle);
        var roots = bundle.Count;
        var existing = ConfigMaps.Current.Items;
        var failed = 0;
        foreach (var ns in Meshed(Namespaces.Current.Items.Values, _pods.Current.Items.Values))
        {
            existing.TryGetValue($"{ns}/{SidecarEnvironment.TrustBundleConfigMap}", out var current);
            if (current?.Data is { } data && data.Count == 1 && data.TryGetValue(SidecarEnvironment.TrustBundleKey, out var held) && held == pem)
            {
                continue;
            }

            var desired = new V1ConfigMap
            {
                ApiVersion = "v1",
                Kind = "ConfigMap",
                Metadata = new V1ObjectMeta
                {
                    Name = SidecarEnvironment.TrustBundleConfigMap,
                    NamespaceProperty = ns,
                    Labels = new Dictionary<string, string>(current?.Metadata.Labels ?? new Dictionary<string, string>(), StringComparer.Ordinal) { [ManagedLabel] = "true" },
                    // The version read: a write over a newer one (another replica, an operator) is refused, not lost.
                    ResourceVersion = current?.Metadata.ResourceVersion,
                },
                Data = new Dictionary<string, string> { [SidecarEnvironment.TrustBundleKey] = pem },
            };
            try
            {
                if (current is null)
                {
                    await _client.CoreV1.CreateNamespacedConfigMapAsync(desired, ns, cancellationToken: cancellationToken).ConfigureAwait(false);
                    _logger.TrustBundleWritten(ns, SidecarEnvironment.TrustBundleConfigMap, "created", roots);
                }
                else
                {
                    await _client.CoreV1.ReplaceNamespacedConfigMapAsync(desired, SidecarEnvironment.TrustBundleConfigMap, ns, cancellationToken: cancellationToken).ConfigureAwait(false);
                    _logger.TrustBundleWritten(ns, SidecarEnvironment.TrustBundleConfigMap, "updated", roots);
                }
            }
            catch (HttpOperationException ex) when (ex.Response.StatusCode is HttpStatusCode.Conflict)
            {
                // Created or changed since our informer saw it: its event schedules the next pass, which decides again.
                failed++;
            }
            catch (Exception ex) when (ex is HttpOperationException or HttpRequestException or IOException or KubernetesException
                || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                failed++;
                _logger.TrustBundleWriteFailed(ns, SidecarEnvironment.TrustBundleConfigMap,
                    ex is HttpOperationException http ? $"HTTP {(int)http.Response.StatusCode} {http.Response.Content}" : ex.Message,
                    Math.Min(MaxRetry.TotalSeconds, Math.Pow(2, Math.Min(_failedPasses, 10))));
            }
        }

        return failed;
    }
}
