using MeshProxy.Config.Parsing;
using MeshProxy.Config.Validation;

namespace MeshProxy.ControlPlane.Resources;

/// <summary>
/// The pre-push check. Runs the sidecar's own cross-resource validation
/// (<see cref="ResourceSetValidator"/>) over everything the directory holds and holds back each
/// resource it refuses, so that one route to an unknown service never becomes a snapshot every
/// sidecar that gets it must NACK (which used to block every later change for them).
/// <para>
/// A held-back resource keeps serving its last version that passed, when there is one and it still
/// passes with the rest (as a rejected edit in Istio or a failed reload in YARP leaves the old
/// configuration in force); otherwise nothing of it is served. A resource deleted from the directory is
/// forgotten, last good included.
/// </para>
/// <para>
/// Checking the whole served set covers every sidecar's closure: a closure is a subset that carries
/// every Service its routes name and the Service of each DestinationPolicy (<c>WorkloadSelector</c>),
/// and none of the checks can fail on a subset of a set that passes, so no sidecar can refuse what
/// it is sent for these reasons.
/// </para>
/// Not thread-safe: <see cref="ResourceDirectory"/> calls it under its reload lock.
/// </summary>
internal sealed class PushGate
{
    /// <summary>Per resource key, its last version that passed (and so was served).</summary>
    private readonly Dictionary<string, StoredResource> _lastPassed = new(StringComparer.Ordinal);

    public ConfigState Apply(ConfigState state)
    {
        var served = new List<StoredResource>(state.Resources);
        var held = new Dictionary<string, (StoredResource Refused, List<ConfigDiagnostic> Errors)>(StringComparer.Ordinal);
        while (true)
        {
            var problems = ResourceSetValidator.Validate([.. served.Select(r => r.Resource)]);
            if (problems.Count == 0)
            {
                break;
            }

            // One resource per round, the first at fault in serving order. A conflict (a host claimed
            // twice, a service routed twice) is laid on the later of the two resources, so the earlier
            // one's own fate is settled first: if it goes, the later one may well pass without it.
            var position = new Dictionary<Config.Resources.Resource, int>(ReferenceEqualityComparer.Instance);
            for (var i = 0; i < served.Count; i++)
            {
                position[served[i].Resource] = i;
            }

            var index = problems.Min(p => position[p.Resource]);
            var culprit = served[index];
            if (!held.TryGetValue(culprit.Key, out var entry))
            {
                held[culprit.Key] = entry = (culprit, []);
            }

            entry.Errors.AddRange(problems.Where(p => ReferenceEquals(p.Resource, culprit.Resource)).Select(p => p.Diagnostic).Except(entry.Errors));
            if (_lastPassed.TryGetValue(culprit.Key, out var last) && last.Version != culprit.Version)
            {
                served[index] = last; // tried once: if it fails too, its version equals the last good and it goes
            }
            else
            {
                served.RemoveAt(index);
            }
        }

        var present = state.Resources.Select(r => r.Key).ToHashSet(StringComparer.Ordinal);
        foreach (var key in _lastPassed.Keys.Where(k => !present.Contains(k)).ToList())
        {
            _lastPassed.Remove(key);
        }

        foreach (var r in served)
        {
            _lastPassed[r.Key] = r;
        }

        var servingVersion = served.ToDictionary(r => r.Key, r => r.Version, StringComparer.Ordinal);
        var heldBack = held.Values
            .OrderBy(h => h.Refused.Key, StringComparer.Ordinal)
            .Select(h => new HeldBackResource(h.Refused, h.Errors, servingVersion.GetValueOrDefault(h.Refused.Key)))
            .ToList();
        return state with { Resources = served, HeldBack = heldBack };
    }
}
