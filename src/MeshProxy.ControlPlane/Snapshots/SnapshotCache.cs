using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using MeshProxy.Api.V1;
using MeshProxy.ControlPlane.Resources;

namespace MeshProxy.ControlPlane.Snapshots;

/// <summary>The resources one workload gets, and the version naming that set (a hash of its resources' keys and versions).</summary>
internal sealed record WorkloadSnapshot(string Version, IReadOnlyList<ConfigResource> Resources);

/// <summary>
/// Builds each workload's snapshot once per configuration generation and shares it between all the
/// sidecars of that workload (the protobuf resources are immutable once built, so sharing is safe and
/// keeps memory per sidecar flat). Resource messages are reused across generations while their
/// version does not change.
/// </summary>
internal sealed class SnapshotCache
{
    private readonly ConcurrentDictionary<string, ConfigResource> _messages = new(StringComparer.Ordinal);
    private volatile Generation _generation = new(ConfigState.Empty);

    public WorkloadSnapshot Get(ConfigState state, Workload workload)
    {
        var generation = _generation;
        if (generation.State != state)
        {
            var fresh = new Generation(state);
            generation = Interlocked.CompareExchange(ref _generation, fresh, generation) == generation ? fresh : _generation;
            if (generation.State != state)
            {
                // A newer state won the race; build for the one asked, uncached.
                return Build(new SelectionIndex(state), workload);
            }

            PruneMessages(state);
        }

        return generation.Snapshots.GetOrAdd(workload.ScopeKey, _ => Build(generation.Index.Value, workload));
    }

    private WorkloadSnapshot Build(SelectionIndex index, Workload workload)
    {
        var selected = WorkloadSelector.Select(index, workload);
        var messages = new List<ConfigResource>(selected.Count);
        var hashInput = new StringBuilder();
        foreach (var r in selected.OrderBy(r => r.Key, StringComparer.Ordinal))
        {
            messages.Add(_messages.GetOrAdd($"{r.Key}@{r.Version}", _ => new ConfigResource
            {
                Kind = r.Resource.Kind,
                Namespace = r.Resource.Metadata.Namespace,
                Name = r.Resource.Metadata.Name,
                Version = r.Version,
                Yaml = r.Yaml,
            }));
            hashInput.Append(r.Key).Append('@').Append(r.Version).Append('\n');
        }

        var version = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(hashInput.ToString())))[..16];
        return new WorkloadSnapshot(version, messages);
    }

    private void PruneMessages(ConfigState state)
    {
        var live = state.Resources.Select(r => $"{r.Key}@{r.Version}").ToHashSet(StringComparer.Ordinal);
        foreach (var key in _messages.Keys)
        {
            if (!live.Contains(key))
            {
                _messages.TryRemove(key, out _);
            }
        }
    }

    private sealed class Generation(ConfigState state)
    {
        public ConfigState State { get; } = state;

        /// <summary>Built by the first workload of the generation to need it, shared by the rest.</summary>
        public Lazy<SelectionIndex> Index { get; } = new(() => new SelectionIndex(state));

        public ConcurrentDictionary<string, WorkloadSnapshot> Snapshots { get; } = new(StringComparer.Ordinal);
    }
}
