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

            // Every resource at fault is dealt with in this round, except the later party to a conflict
            // whose earlier party is at fault too: if that one goes, the later one may well pass without
            // it, so it waits for the next round. (The first resource at fault is never made to wait, so
            // each round settles at least one; rounds follow the chain of consequences, a Service held
            // back and then the routes to it, not the number of resources at fault.)
            var failing = problems.Select(p => p.Resource).ToHashSet(ReferenceEqualityComparer.Instance);
            var waiting = problems
                .Where(p => p.ConflictsWith is { } earlier && failing.Contains(earlier))
                .Select(p => p.Resource)
                .ToHashSet(ReferenceEqualityComparer.Instance);
            var next = new List<StoredResource>(served.Count);
            foreach (var resource in served)
            {
                if (!failing.Contains(resource.Resource) || waiting.Contains(resource.Resource))
                {
                    next.Add(resource);
                    continue;
                }

                if (!held.TryGetValue(resource.Key, out var entry))
                {
                    held[resource.Key] = entry = (resource, []);
                }

                entry.Errors.AddRange(problems.Where(p => ReferenceEquals(p.Resource, resource.Resource)).Select(p => p.Diagnostic).Except(entry.Errors));
                if (_lastPassed.TryGetValue(resource.Key, out var last) && last.Version != resource.Version)
                {
                    next.Add(last); // tried once: if it fails too, its version is the last good one and it goes
                }
            }

            served = next;
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
