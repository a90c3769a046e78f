using System.Net;
using System.Security.Cryptography;
using System.Text;
using k8s;
using k8s.Models;
using MeshProxy.Api.V1;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Discovery;
using MeshProxy.ControlPlane.Kubernetes.CustomResources;
using MeshProxy.ControlPlane.Kubernetes.Discovery;
using MeshProxy.ControlPlane.Kubernetes.Informers;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Snapshots;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes;

/// <summary>
/// The configuration as the Kubernetes API has it: Services, EndpointSlices and Pods watched (one informer each)
/// and translated into mesh Services (<see cref="ServiceTranslator"/>); the custom kinds (<see cref="CustomResourceSource"/>:
/// every meshproxy.io kind, Istio's AuthorizationPolicy, the Gateway API's HTTPRoute/GRPCRoute with Service parents);
/// and the resources of a directory when one is given. One resource key is served from one place, in this
/// precedence: the directory (what the operator wrote by hand) over a custom resource over a discovered Service.
/// Changes of any of them are coalesced for a short quiet time and the whole set goes through the same pre-push
/// check as the directory's, so the push machinery downstream is the same.
/// <para>
/// Nothing is served before every informer has listed once; a custom kind whose CRD is not installed counts as
/// listed and empty (its list answers 404; see <see cref="Informer{T}"/>), so an absent optional CRD never blocks the
/// start. While the API server is unreachable the last known state keeps serving (see <see cref="Health"/>). A
/// Service that cannot be translated, or a custom object the parser refuses, is skipped with a log line, and keeps
/// its last good version if it had one; the object's status says why (<see cref="StatusPublisher"/>).
/// </para>
/// Also the sidecars' <see cref="IWorkloadResolver"/>: a sidecar is who its Pod says, never what its Node claims.
/// </summary>
internal sealed class KubernetesSource : IConfigSource, IWorkloadResolver, IAsyncDisposable
{
    private readonly KubernetesSourceOptions _options;
    private readonly ResourceDirectory? _directory;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly PushGate _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _running = [];
    private readonly Dictionary<string, StoredResource> _lastGood = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _reported = new(StringComparer.Ordinal);
    private readonly ITimer _debounce;
    private readonly IKubernetes _client;
    private readonly ILoggerFactory _loggers;
    private readonly CustomResourceSource _custom;
    private volatile ConfigState _current = ConfigState.Empty;
    private volatile CustomResourceSnapshot? _customSnapshot;
    private volatile StatusPublisher? _status;
    private ReplicaView? _replicas;
    private volatile bool _started;

    public KubernetesSource(IKubernetes client, KubernetesSourceOptions options, ResourceDirectory? directory, TimeProvider time, ILoggerFactory loggers)
    {
        _client = client;
        _loggers = loggers;
        _options = options;
        _directory = directory;
        _time = time;
        _logger = loggers.CreateLogger<KubernetesSource>();
        var informerLogger = loggers.CreateLogger("MeshProxy.ControlPlane.Kubernetes.Informer");
        Services = new Informer<V1Service>(client, KubernetesResource<V1Service>.Services, options.Informers, time, informerLogger);
        EndpointSlices = new Informer<V1EndpointSlice>(client, KubernetesResource<V1EndpointSlice>.EndpointSlices, options.Informers, time, informerLogger);
        Pods = new Informer<V1Pod>(client, KubernetesResource<V1Pod>.Pods, options.Informers, time, informerLogger);
        _custom = new CustomResourceSource(client, options.Informers, time, informerLogger);
        Informers = [Services, EndpointSlices, Pods, .. _custom.Informers];
        Description = $"kubernetes {client.BaseUri}" + (directory is null ? string.Empty : $" + {directory.Directory}");
        _debounce = time.CreateTimer(_ => Rebuild(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public Informer<V1Service> Services { get; }

    public Informer<V1EndpointSlice> EndpointSlices { get; }

    public Informer<V1Pod> Pods { get; }

    /// <summary>Discovery's informers, then the custom kinds'.</summary>
    public IReadOnlyList<IInformer> Informers { get; }

    public ConfigState Current => _current;

    public string Description { get; }

    public event Action<ConfigState>? Changed;

    /// <summary>Every informer's link to the API server.</summary>
    public IReadOnlyList<InformerHealth> Health => [.. Informers.Select(i => i.Health)];

    /// <summary>
    /// Starts the informers and waits for each one's first list, then builds the first state: until then there is
    /// nothing true to serve (an empty set pushed now would withdraw every sidecar's services).
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var informer in new IInformer[] { Services, EndpointSlices, Pods })
        {
            informer.Changed += Schedule;
            _running.Add(Task.Run(() => informer.RunAsync(_stop.Token), CancellationToken.None));
        }

        _custom.Changed += Schedule;
        _running.Add(Task.Run(() => _custom.RunAsync(_stop.Token), CancellationToken.None));

        if (_directory is not null)
        {
            _directory.Changed += _ => Schedule();
        }

        await Task.WhenAll(Informers.Select(i => i.Synced)).WaitAsync(cancellationToken).ConfigureAwait(false);
        _started = true;
        Rebuild();
    }

    /// <summary>
    /// Starts writing the custom objects' statuses (Accepted/Invalid, sidecars that applied or NACKed each, routes'
    /// per-parent conditions) after every rebuild and every <see cref="SidecarsAnswered"/>, counted over the
    /// sidecars connected to this control plane (<paramref name="sidecars"/>, their snapshots from <paramref name="snapshots"/>)
    /// as this replica's entry, beside the other replicas' (<see cref="Replicas"/>).
    /// </summary>
    public void WriteStatuses(ConnectionRegistry sidecars, SnapshotCache snapshots)
    {
        _status = new StatusPublisher(
            new StatusWriter(_client, _time, _loggers.CreateLogger<StatusWriter>(), Replicas),
            () => _customSnapshot is { } snapshot && _current is { Generation: > 0 } state
                ? new StatusInputs(snapshot, state, ResourceStatus.CountSidecars(state, sidecars.All, snapshots))
                : null,
            _options.StatusDebounce,
            _time,
            _loggers.CreateLogger<StatusPublisher>());
        _status.Schedule();
    }

    /// <summary>
    /// This replica (its pod, <see cref="KubernetesSourceOptions.ReplicaName"/>) and which other replicas' entries in
    /// the statuses still count: a replica is alive while its pod is, as the Pods informer has it (no deletion
    /// timestamp, phase Running, Ready not False). A replica that dies is its pod going not Ready (the kubelet's view
    /// of a dead container), deleted, or replaced by a pod of another name: the pod's change rebuilds the state,
    /// every rebuild schedules a status pass, and that pass drops the dead replica's entries from the sums. The pod's
    /// own lifecycle is the expiry, so no Lease or heartbeat write is needed for it.
    /// </summary>
    public ReplicaView Replicas => _replicas ??= new ReplicaView(_options.ReplicaName, name =>
        Pods.Current.Items.TryGetValue($"{_options.ReplicaNamespace}/{name}", out var pod) && PodWorkloads.IsAlive(pod));

    /// <summary>A sidecar ACKed, NACKed or left: the counts in the statuses may have changed.</summary>
    public void SidecarsAnswered() => _status?.Schedule();

    public WorkloadResolution Resolve(Node node, IPAddress? remoteAddress)
    {
        var ns = string.IsNullOrEmpty(node.Namespace) ? "default" : node.Namespace;
        // The sidecar names itself "<POD_NAME>.<namespace>" (ControlPlaneSource); the pod name alone is taken too.
        var podName = node.InstanceId.EndsWith("." + ns, StringComparison.Ordinal) ? node.InstanceId[..^(ns.Length + 1)] : node.InstanceId;
        if (podName.Length == 0)
        {
            return new WorkloadResolution(null, "node.instance_id must name the sidecar's pod (<pod>.<namespace>)");
        }

        if (!Pods.Current.Items.TryGetValue($"{ns}/{podName}", out var pod))
        {
            return new WorkloadResolution(null, $"pod {ns}/{podName} is not known (yet)", Retry: true);
        }

        if (_options.CheckPeerAddress && (remoteAddress is null || !PodWorkloads.HasAddress(pod, remoteAddress)))
        {
            return new WorkloadResolution(null, $"the connection comes from {remoteAddress}, which is not an IP of pod {ns}/{podName}");
        }

        return new WorkloadResolution(PodWorkloads.From(pod), null) { Pod = podName };
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _debounce.DisposeAsync().ConfigureAwait(false);
        if (_status is { } status)
        {
            await status.DisposeAsync().ConfigureAwait(false);
        }

        await Task.WhenAll(_running).ConfigureAwait(false);
        _stop.Dispose();
    }

    // A rollout is a burst of events across three kinds: one state for the burst, not one per event.
    private void Schedule()
    {
        if (_started)
        {
            _debounce.Change(_options.Debounce, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>
    /// Translates everything the informers hold now, checks the set, and swaps it in when anything changed; the
    /// custom objects' statuses are due after every rebuild (their writer skips the ones that did not change).
    /// </summary>
    internal void Rebuild()
    {
        ConfigState? changed = null;
        var started = _time.GetTimestamp();
        lock (_lock)
        {
            var present = new HashSet<string>(StringComparer.Ordinal);
            var errors = new List<ConfigDiagnostic>();
            var kept = new List<string>();
            var invalid = 0;
            var discovered = Discover(present, errors, kept, ref invalid);

            var directory = _directory?.Current;
            var resources = new List<StoredResource>(directory?.Resources ?? []);
            var taken = resources.Select(r => r.Key).ToHashSet(StringComparer.Ordinal);
            errors.AddRange(directory?.Errors ?? []);
            kept.AddRange(directory?.KeptLastGood ?? []);
            invalid += directory?.InvalidResources ?? 0;
            var warnings = new List<ConfigDiagnostic>(directory?.Warnings ?? []);

            // Precedence, one key served from one place: the directory, then custom resources, then discovery.
            var custom = _custom.Read(
                resources.Select(r => r.Resource).OfType<ServiceResource>(),
                discovered.Select(r => r.Resource).OfType<ServiceResource>());
            foreach (var (_, _, read) in custom.Objects)
            {
                present.Add(read.Key);
                warnings.AddRange(read.Warnings);
                var stored = read.Resource;
                if (stored is null)
                {
                    Report(read.Key, ResourceStatus.FileFree(read.Errors));
                    invalid++;
                    errors.AddRange(read.Errors);
                    if (_lastGood.TryGetValue(read.Key, out var last))
                    {
                        stored = last;
                        kept.Add(last.Key);
                    }
                }
                else
                {
                    Cleared(read.Key);
                    _lastGood[read.Key] = stored;
                }

                if (stored is not null && taken.Add(stored.Key))
                {
                    resources.Add(stored);
                }
            }

            resources.AddRange(custom.Generated.Concat(discovered).Where(r => taken.Add(r.Key)));

            foreach (var gone in _lastGood.Keys.Where(k => !present.Contains(k)).ToList())
            {
                _lastGood.Remove(gone);
                Cleared(gone);
            }

            _customSnapshot = custom;
            var candidate = _gate.Apply(new ConfigState(_current.Generation + 1, resources, errors, warnings, kept, invalid));
            if (_current.Generation == 0 || !SameContent(candidate, _current))
            {
                _current = candidate;
                changed = candidate;
                _logger.KubernetesStateBuilt(candidate.Generation, Services.Current.Items.Count, candidate.Resources.Count, candidate.HeldBack.Count, _time.GetElapsedTime(started).TotalMilliseconds);
            }
        }

        if (changed is not null)
        {
            Changed?.Invoke(changed);
        }

        _status?.Schedule();
    }

    /// <summary>
    /// Every Service the informers hold, as mesh Services in key order. One that cannot be translated is reported
    /// (error, log line) and served from its last good translation if it had one.
    /// </summary>
    private List<StoredResource> Discover(HashSet<string> present, List<ConfigDiagnostic> errors, List<string> kept, ref int invalid)
    {
        var services = Services.Current.Items;
        var pods = Pods.Current.Items;
        var slicesByService = EndpointSlices.Current.Items.Values
            .Where(s => s.Metadata.Labels?.ContainsKey(ServiceTranslator.ServiceNameLabel) == true)
            .ToLookup(s => $"{s.Metadata.NamespaceProperty}/{s.Metadata.Labels![ServiceTranslator.ServiceNameLabel]}", StringComparer.Ordinal);
        V1Pod? PodOf(string ns, string name) => pods.GetValueOrDefault($"{ns}/{name}");

        var discovered = new List<StoredResource>();
        foreach (var (key, service) in services.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            var origin = $"kubernetes:services/{key}";
            present.Add(origin);
            string? problem;
            StoredResource? stored = null;
            var yaml = ServiceTranslator.Translate(service, slicesByService[key], PodOf, _options.ClusterDomain, out problem);
            if (yaml is not null && _lastGood.TryGetValue(origin, out var unchanged) && unchanged.Yaml == yaml)
            {
                // A rollout touches a few Services among thousands: the others translate to the same text as last time,
                // and parsing that again was most of a rebuild's cost (benchmarks/RESULTS.md, "Kubernetes source at scale").
                stored = unchanged;
            }
            else if (yaml is not null)
            {
                var parsed = ResourceParser.ParseText(yaml, origin);
                if (parsed.IsValid && parsed.Resources is [var resource])
                {
                    stored = new StoredResource(resource, yaml, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(yaml)))[..12]);
                }
                else
                {
                    problem = string.Join("; ", parsed.Errors.Select(e => $"{e.FieldPath}: {e.Reason}"));
                }
            }

            if (problem is not null)
            {
                Report(origin, problem);
                invalid++;
                errors.Add(new ConfigDiagnostic(origin, 0, "spec", problem));
                if (_lastGood.TryGetValue(origin, out var last))
                {
                    stored = last;
                    kept.Add(last.Key);
                }
            }
            else
            {
                Cleared(origin);
                _lastGood[origin] = stored!;
            }

            if (stored is not null)
            {
                discovered.Add(stored);
            }
        }

        return discovered;
    }

    /// <summary>Logged once per object and reason, not at every rebuild.</summary>
    private void Report(string origin, string problem)
    {
        if (_reported.TryGetValue(origin, out var before) && before == problem)
        {
            return;
        }

        _reported[origin] = problem;
        _logger.ServiceSkipped(origin, problem, _lastGood.ContainsKey(origin));
    }

    private void Cleared(string origin) => _reported.Remove(origin);

    private static bool SameContent(ConfigState a, ConfigState b) =>
        a.Resources.Count == b.Resources.Count &&
        a.Resources.Zip(b.Resources).All(p => p.First.Key == p.Second.Key && p.First.Version == p.Second.Version) &&
        a.Errors.SequenceEqual(b.Errors) &&
        a.HeldBack.Count == b.HeldBack.Count &&
        a.HeldBack.Zip(b.HeldBack).All(p => p.First.SameAs(p.Second));
}

/// <summary>Settings of the Kubernetes source.</summary>
internal sealed record KubernetesSourceOptions
{
    /// <summary>The cluster's DNS domain: a Service answers to name.ns.svc.&lt;this&gt;.</summary>
    public string ClusterDomain { get; init; } = "cluster.local";

    /// <summary>Quiet time after a change before the state is rebuilt (a rollout is a burst of events).</summary>
    public TimeSpan Debounce { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Quiet time before the custom objects' statuses are written after a change or a sidecar's ACK/NACK.</summary>
    public TimeSpan StatusDebounce { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>This replica's pod (POD_NAME, else the host name): its entry in the statuses' per-replica counts.</summary>
    public string ReplicaName { get; init; } = Environment.GetEnvironmentVariable("POD_NAME") is { Length: > 0 } pod ? pod : Environment.MachineName;

    /// <summary>The control plane's own namespace, where the replicas' pods are (POD_NAMESPACE, else the service account's).</summary>
    public string ReplicaNamespace { get; init; } = Certificates.KubernetesCaOptions.DefaultNamespace();

    public InformerOptions Informers { get; init; } = new();

    /// <summary>
    /// Whether a config stream must come from an IP of the pod it names. Off (with <c>--token-pod-address ignore</c>)
    /// where something rewrites pods' source addresses on the way (kube-proxy <c>--masquerade-all</c>, an egress NAT):
    /// the stream is then resolved by the pod it names alone, and that pod must still run as the namespace and
    /// service account the stream's credential proved (and be the token's own pod, for a pod-bound token), as Istio
    /// binds a proxy's claimed pod to its identity.
    /// </summary>
    public bool CheckPeerAddress { get; init; } = true;
}
