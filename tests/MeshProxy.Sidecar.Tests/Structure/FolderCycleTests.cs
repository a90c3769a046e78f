using System.Text.RegularExpressions;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Structure;

/// <summary>
/// The sidecar's folders and which may use which (src/MeshProxy.Sidecar/README.md has the table in prose).
/// A folder uses another when one of its source files names a type declared only in that other folder.
/// </summary>
public sealed partial class FolderCycleTests
{
    /// <summary>
    /// What each data-path folder may use (the README's "may call" column). Endpoint choice (LoadBalancing) is at
    /// the bottom: it owns the shared endpoint vocabulary (UpstreamEndpoint, EndpointHealth, OutlierPolicy) that
    /// routing, the attempt loop, the upstream send and telemetry all read. Routing owns the compiled settings of
    /// its routes and clusters (RetryPolicy, ClusterPolicy) and holds a cluster's live state and pool only through
    /// interfaces it owns (IClusterState, IClusterConnections). Telemetry is next: it owns the
    /// vocabulary the layers above write into (response flags, failure classification, local replies) and uses
    /// only what it reports on. The attempt loop reaches the upstream send only through IUpstreamSender, which
    /// it owns; the runtime builder composes the layers below it and nothing below uses it.
    /// </summary>
    private static readonly Dictionary<string, string[]> MayUse = new()
    {
        ["LoadBalancing"] = [],
        ["Routing"] = ["LoadBalancing"],
        ["Telemetry"] = ["Configuration", "ControlPlaneClient", "Identity", "LoadBalancing", "Routing"],
        ["Resilience"] = ["LoadBalancing", "Routing", "Telemetry"],
        ["Forwarding"] = ["Authorization", "Configuration", "Identity", "LoadBalancing", "Resilience", "Routing", "Telemetry"],
        ["Egress"] = ["Forwarding", "Telemetry"],
        ["Mirroring"] = ["Forwarding", "LoadBalancing", "Resilience", "Routing", "Telemetry"],
        ["Runtime"] = ["Configuration", "Forwarding", "Resilience", "Routing", "Telemetry"],
    };

    [Fact]
    public void No_two_folders_use_each_other()
    {
        var uses = Uses();
        var cycles = uses
            .SelectMany(a => a.Value.Keys.Where(b => uses.TryGetValue(b, out var back) && back.ContainsKey(a.Key)).Select(b => (a.Key, b)))
            .Where(p => string.CompareOrdinal(p.Key, p.b) < 0)
            .Select(p => $"{p.Key}<->{p.b} ({Why(uses, p.Key, p.b)})")
            .Order(StringComparer.Ordinal)
            .ToList();

        Assert.True(cycles.Count == 0, "folders that use each other: " + string.Join("; ", cycles));
    }

    [Fact]
    public void Data_path_folders_use_only_what_the_table_allows()
    {
        var uses = Uses();
        foreach (var (folder, allowed) in MayUse)
        {
            var extra = uses.GetValueOrDefault(folder, []).Where(u => !allowed.Contains(u.Key))
                .Select(u => $"{u.Key} ({string.Join(", ", u.Value.Order(StringComparer.Ordinal))})").ToList();
            Assert.True(extra.Count == 0, $"{folder} uses {string.Join("; ", extra)}");
        }
    }

    [Fact]
    public void The_check_sees_a_use()
    {
        // The detector itself: the attempt loop does use endpoint choice (the picker, endpoint health).
        Assert.Contains("UpstreamEndpoint", Uses()["Resilience"]["LoadBalancing"]);
    }

    private static string Why(Dictionary<string, Dictionary<string, HashSet<string>>> uses, string a, string b)
    {
        return $"{a} uses {string.Join(", ", uses[a][b])}; {b} uses {string.Join(", ", uses[b][a])}";
    }

    /// <summary>Folder -> folder it uses -> the types it names there.</summary>
    private static Dictionary<string, Dictionary<string, HashSet<string>>> Uses()
    {
        var root = Path.Combine(RepoPaths.Root, "src", "MeshProxy.Sidecar");
        var sources = Directory.GetDirectories(root)
            .Select(d => Path.GetFileName(d))
            .Where(d => d is not ("bin" or "obj"))
            .ToDictionary(d => d, d => Directory.GetFiles(Path.Combine(root, d), "*.cs", SearchOption.AllDirectories)
                .Select(f => Code(File.ReadAllText(f))).ToList());

        var declaredIn = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var (folder, files) in sources)
        {
            foreach (Match m in files.SelectMany(f => Declaration().Matches(f)))
            {
                (declaredIn.TryGetValue(m.Groups[1].Value, out var at) ? at : declaredIn[m.Groups[1].Value] = []).Add(folder);
            }
        }

        var uses = new Dictionary<string, Dictionary<string, HashSet<string>>>(StringComparer.Ordinal);
        foreach (var (folder, files) in sources)
        {
            var used = uses[folder] = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
            foreach (Match m in files.SelectMany(f => Identifier().Matches(f)))
            {
                // A name declared in one other folder only (a name this folder declares too is its own).
                if (declaredIn.TryGetValue(m.Value, out var at) && at.Count == 1 && !at.Contains(folder))
                {
                    var other = at.Single();
                    (used.TryGetValue(other, out var names) ? names : used[other] = []).Add(m.Value);
                }
            }
        }

        return uses;
    }

    /// <summary>The code without comments and string literals, where a type's name is not a use of it.</summary>
    private static string Code(string source) => Strings().Replace(Comments().Replace(source, " "), "\"\"");

    [GeneratedRegex(@"\b(?:class|record|struct|interface|enum)\s+(?:struct\s+|class\s+)?([A-Z]\w*)")]
    private static partial Regex Declaration();

    /// <summary>A capitalised name, except after "variable." (a member of a value, like spec.RetryBudget, never a type).</summary>
    [GeneratedRegex(@"(?<!\b[a-z_]\w*\.)\b[A-Z]\w*\b")]
    private static partial Regex Identifier();

    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/", RegexOptions.Singleline)]
    private static partial Regex Comments();

    [GeneratedRegex(@"@?\$?""(?:[^""\\\n]|\\.)*""")]
    private static partial Regex Strings();
}
