using System.Text.Json;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.Pods;

/// <summary>
/// TEST INFRASTRUCTURE: peers/load.py running in a pod: steady GETs through the pod's sidecar, each answer counted by
/// the pod that gave it, each failure recorded with its reason.
/// </summary>
internal sealed class LoadLoop(ExternalProcess process) : IAsyncDisposable
{
    /// <summary>The latest tally: requests answered with 200, by the pod that answered.</summary>
    public (int Ok, int Failed, IReadOnlyDictionary<string, int> By) Tally
    {
        get
        {
            var last = process.Output.Split('\n').LastOrDefault(l => l.StartsWith("{\"ok\"", StringComparison.Ordinal));
            return last is null ? (0, 0, new Dictionary<string, int>()) : Parse(JsonDocument.Parse(last).RootElement);
        }
    }

    /// <summary>Every failure so far, with its reason.</summary>
    public string[] Failures => [.. process.Output.Split('\n').Where(l => l.StartsWith("{\"failure\"", StringComparison.Ordinal))];

    /// <summary>Waits until <paramref name="requests"/> more answers came from each of <paramref name="pods"/> (from now).</summary>
    public async Task WaitForAnswersFromAsync(int requests, params string[] pods)
    {
        var start = Tally.By;
        await Eventually.TrueAsync(
            () => Tally.By is var by && pods.All(p => by.GetValueOrDefault(p) >= start.GetValueOrDefault(p) + requests),
            $"{requests} more answers from each of {string.Join(", ", pods)} (so far: {Describe(Tally.By)}; failures: {string.Join('\n', Failures)}; {process.Output[^Math.Min(2000, process.Output.Length)..]})",
            60_000);
    }

    /// <summary>Stops the loop after its request in flight; the final tally.</summary>
    public async Task<(int Ok, int Failed, IReadOnlyDictionary<string, int> By)> StopAsync()
    {
        process.Signal(15);
        var line = await process.WaitForLineAsync("{\"final\"", TimeSpan.FromSeconds(30));
        return Parse(JsonDocument.Parse(line).RootElement.GetProperty("final"));
    }

    public static string Describe(IReadOnlyDictionary<string, int> by) => string.Join(", ", by.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));

    public ValueTask DisposeAsync() => process.DisposeAsync();

    private static (int, int, IReadOnlyDictionary<string, int>) Parse(JsonElement tally) =>
        (tally.GetProperty("ok").GetInt32(), tally.GetProperty("failed").GetInt32(),
         tally.GetProperty("by").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32(), StringComparer.Ordinal));
}
