using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Schema;
using MeshProxy.ControlPlane.Discovery;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Snapshots;

namespace MeshProxy.ControlPlane.Kubernetes.CustomResources;

/// <summary>How many connected sidecars serve a resource's current version, and how many refused it.</summary>
internal sealed record SidecarCounts(int Applied, int Nacked)
{
    public static SidecarCounts None { get; } = new(0, 0);
}

/// <summary>
/// Which replica is writing (<see cref="Self"/>, its pod's name) and which others still count (<see cref="Alive"/>, by
/// pod name): each replica counts only the sidecars connected to it, so a status holds one entry per replica and
/// shows their sum; an entry of a replica that is gone is dropped by whichever replica writes next.
/// </summary>
internal sealed record ReplicaView(string Self, Func<string, bool> Alive)
{
    /// <summary>A control plane that is the only one: no other replica's entry counts.</summary>
    public static ReplicaView Alone { get; } = new("controlplane", _ => false);
}

/// <summary>
/// The status the control plane writes on a meshproxy.io object (and an Istio AuthorizationPolicy): condition
/// Accepted, True when the object is served as written, False with reason Invalid and the errors without any file
/// (field: reason) when the parser refused it or the pre-push check held it back; and how many sidecars applied it
/// or NACKed it. Pure: the writer patches what this returns onto the status subresource.
/// </summary>
internal static partial class ResourceStatus
{
    /// <summary>
    /// Per resource key, the sidecars connected now that ACKed a snapshot holding its current version (their
    /// workload's current snapshot), and those whose NACK of their current snapshot names it. The sidecar names
    /// every error by the resource's key (Kind/namespace/name:line: ...), which is how a NACK is laid on a resource;
    /// a sidecar still waiting for its push counts in neither.
    /// </summary>
    public static IReadOnlyDictionary<string, SidecarCounts> CountSidecars(ConfigState state, IEnumerable<SidecarConnection> connections, SnapshotCache cache)
    {
        var applied = new Dictionary<string, int>(StringComparer.Ordinal);
        var nacked = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var connection in connections)
        {
            var snapshot = cache.Get(state, connection.Workload);
            var sync = connection.State;
            if (sync.AckedVersion == snapshot.Version)
            {
                foreach (var r in snapshot.Resources)
                {
                    Increment(applied, $"{r.Kind}/{r.Namespace}/{r.Name}");
                }
            }
            else if (connection.Status == SyncStatus.Nack && sync.SentVersion == snapshot.Version && sync.LastNack is { } nack)
            {
                var inSnapshot = snapshot.Resources.Select(r => $"{r.Kind}/{r.Namespace}/{r.Name}").ToHashSet(StringComparer.Ordinal);
                foreach (var key in NamedKeys(nack.Error).Where(inSnapshot.Contains))
                {
                    Increment(nacked, key);
                }
            }
        }

        return applied.Keys.Union(nacked.Keys).ToDictionary(
            k => k,
            k => new SidecarCounts(applied.GetValueOrDefault(k), nacked.GetValueOrDefault(k)),
            StringComparer.Ordinal);
    }

    /// <summary>
    /// The status subresource for one object: <paramref name="errors"/> are the parser's, <paramref name="heldBack"/>
    /// the pre-push check's; <paramref name="lastGoodServes"/> when the object's last accepted version keeps serving
    /// in place of a refused edit. The condition keeps <paramref name="previous"/>'s lastTransitionTime while its
    /// status and reason stay the same, as Kubernetes conditions do. <paramref name="counts"/> are this replica's
    /// (<paramref name="replicas"/>, default <see cref="ReplicaView.Alone"/>); see <see cref="Sidecars"/>.
    /// </summary>
    public static JsonObject Build(
        long generation, IReadOnlyList<ConfigDiagnostic> errors, HeldBackResource? heldBack, SidecarCounts counts, JsonElement previous, DateTimeOffset now,
        bool lastGoodServes = false, ReplicaView? replicas = null)
    {
        bool accepted;
        string reason;
        string message;
        if (errors.Count > 0)
        {
            (accepted, reason, message) = (false, "Invalid", FileFree(errors) + (lastGoodServes ? "; its last accepted version keeps serving" : "; not served"));
        }
        else if (heldBack is not null)
        {
            (accepted, reason, message) = (false, "Invalid", FileFree(heldBack.Errors)
                + (heldBack.ServingVersion is null ? "; not served" : "; its last accepted version keeps serving"));
        }
        else
        {
            (accepted, reason, message) = (true, "Accepted", "served to the sidecars it concerns");
        }

        var transition = now;
        if (PreviousCondition(previous) is { } old
            && old.TryGetProperty("status", out var s) && s.GetString() == (accepted ? "True" : "False")
            && old.TryGetProperty("reason", out var r) && r.GetString() == reason
            && old.TryGetProperty("lastTransitionTime", out var t) && t.TryGetDateTimeOffset(out var since))
        {
            transition = since;
        }

        return new JsonObject
        {
            ["observedGeneration"] = generation,
            ["conditions"] = new JsonArray(new JsonObject
            {
                ["type"] = CrdWriter.AcceptedCondition,
                ["status"] = accepted ? "True" : "False",
                ["reason"] = reason,
                ["message"] = message,
                ["observedGeneration"] = generation,
                ["lastTransitionTime"] = transition.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
            }),
            ["sidecars"] = Sidecars(previous, counts, replicas ?? ReplicaView.Alone),
        };
    }

    /// <summary>
    /// <c>sidecars</c>: <c>replicas</c>, one entry per control-plane replica that has sidecars answering for this
    /// resource (this one's from <paramref name="own"/>, the others' kept from <paramref name="previous"/> while they
    /// are alive), and <c>applied</c>/<c>nacked</c>, their sums: the mesh-wide counts. Each replica writes only its own
    /// entry, so two replicas' writes never undo each other (the writer guards each with the resourceVersion it read).
    /// </summary>
    public static JsonObject Sidecars(JsonElement previous, SidecarCounts own, ReplicaView replicas)
    {
        var entries = new SortedDictionary<string, SidecarCounts>(StringComparer.Ordinal);
        if (previous.ValueKind == JsonValueKind.Object && previous.TryGetProperty("sidecars", out var sidecars) && sidecars.ValueKind == JsonValueKind.Object
            && sidecars.TryGetProperty("replicas", out var old) && old.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in old.EnumerateObject())
            {
                if (entry.Name != replicas.Self && replicas.Alive(entry.Name) && entry.Value.ValueKind == JsonValueKind.Object)
                {
                    entries[entry.Name] = new SidecarCounts(Count(entry.Value, "applied"), Count(entry.Value, "nacked"));
                }
            }
        }

        if (own.Applied > 0 || own.Nacked > 0)
        {
            entries[replicas.Self] = own;
        }

        var map = new JsonObject();
        foreach (var (name, counts) in entries)
        {
            map[name] = new JsonObject { ["applied"] = counts.Applied, ["nacked"] = counts.Nacked };
        }

        return new JsonObject { ["applied"] = entries.Values.Sum(c => c.Applied), ["nacked"] = entries.Values.Sum(c => c.Nacked), ["replicas"] = map };

        static int Count(JsonElement entry, string name) =>
            entry.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) && n > 0 ? n : 0;
    }

    /// <summary>"field: reason" for each error, the file (which is the object itself) left out.</summary>
    public static string FileFree(IEnumerable<ConfigDiagnostic> errors) =>
        string.Join("; ", errors.Select(e => e.FieldPath.Length == 0 ? e.Reason : $"{e.FieldPath}: {e.Reason}"));

    private static JsonElement? PreviousCondition(JsonElement status)
    {
        if (status.ValueKind != JsonValueKind.Object || !status.TryGetProperty("conditions", out var conditions) || conditions.ValueKind != JsonValueKind.Array)
        {
            return null;
        }

        foreach (var condition in conditions.EnumerateArray())
        {
            if (condition.ValueKind == JsonValueKind.Object && condition.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String
                && type.GetString() == CrdWriter.AcceptedCondition)
            {
                return condition;
            }
        }

        return null;
    }

    private static IEnumerable<string> NamedKeys(string nackMessage) =>
        ErrorPrefix().Matches(nackMessage).Select(m => m.Groups["key"].Value).Distinct(StringComparer.Ordinal);

    private static void Increment(Dictionary<string, int> counts, string key) => counts[key] = counts.GetValueOrDefault(key) + 1;

    // How the sidecar names a pushed resource's errors: Kind/namespace/name:line:
    [GeneratedRegex(@"(?<key>[A-Za-z]+/[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9.-]*):[0-9]+:")]
    private static partial Regex ErrorPrefix();
}
