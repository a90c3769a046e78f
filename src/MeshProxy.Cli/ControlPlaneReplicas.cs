using System.Text.Json;
using k8s;
using k8s.Autorest;
using MeshProxy.Cli.Install;

namespace MeshProxy.Cli;

/// <summary>
/// Every control-plane replica's <c>/debug/syncz</c>, merged. A replica knows only the streams it serves, so the fleet's
/// state is the union over replicas, asked one by one, as <c>istioctl proxy-status</c> asks every istiod: through the
/// Kubernetes API (the replicas are the running pods of the control plane's Deployment, each read through the API
/// server's pod proxy on its monitoring port, so no port-forward is needed), or at addresses given by hand.
/// </summary>
internal static class ControlPlaneReplicas
{
    public const int MonitoringPort = 15014;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>
    /// Reads every running pod of the control plane <paramref name="install"/> describes. A replica that cannot be read is
    /// named in <see cref="FleetStatus.Unreachable"/> (its sidecars are missing from the rows); an empty replica list is
    /// not an error here (the caller decides).
    /// </summary>
    /// <exception cref="HttpOperationException">The pods cannot be listed.</exception>
    public static async Task<FleetStatus> ReadAsync(IKubernetes client, InstallOptions install, CancellationToken cancellationToken)
    {
        var selector = new Dictionary<string, string>(StringComparer.Ordinal) { ["app"] = install.ControlPlane, [InstallOptions.RevisionLabel] = install.Revision };
        var pods = await client.CoreV1.ListNamespacedPodAsync(
            install.Namespace, labelSelector: string.Join(",", selector.Select(l => $"{l.Key}={l.Value}")), cancellationToken: cancellationToken).ConfigureAwait(false);
        var replicas = pods.Items
            // The selector again here: a label selector is a filter the caller must not have to trust the server with.
            .Where(p => selector.All(l => p.Metadata.Labels?.TryGetValue(l.Key, out var v) == true && v == l.Value))
            // A pod not running (pending, failed, being deleted) serves no stream worth asking about.
            .Where(p => p.Status?.Phase == "Running" && p.Metadata.DeletionTimestamp is null)
            .Select(p => p.Metadata.Name)
            .Order(StringComparer.Ordinal)
            .ToList();
        return await ReadAllAsync(replicas, async (pod, ct) =>
        {
            var body = await client.CoreV1.ConnectGetNamespacedPodProxyWithPathAsync($"{pod}:{MonitoringPort}", install.Namespace, "debug/syncz", cancellationToken: ct).ConfigureAwait(false);
            return await TextAsync(body).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads each monitoring address given (<c>--control-plane</c>, once per replica).</summary>
    public static async Task<FleetStatus> ReadAsync(IReadOnlyList<Uri> monitoring, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return await ReadAllAsync(monitoring.Select(u => u.ToString()).ToList(), (address, ct) => http.GetStringAsync(new Uri(new Uri(address), "/debug/syncz"), ct), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A proxied body, whichever way the client hands it over.</summary>
    public static async Task<string> TextAsync(object? body)
    {
        switch (body)
        {
            case null:
                return string.Empty;
            case Stream stream:
                await using (stream.ConfigureAwait(false))
                {
                    using var reader = new StreamReader(stream);
                    return await reader.ReadToEndAsync().ConfigureAwait(false);
                }

            default:
                return body.ToString() ?? string.Empty;
        }
    }

    private static async Task<FleetStatus> ReadAllAsync(List<string> replicas, Func<string, CancellationToken, Task<string>> read, CancellationToken cancellationToken)
    {
        var rows = new List<SyncRow>();
        var unreachable = new List<string>();
        foreach (var replica in replicas)
        {
            try
            {
                var text = await read(replica, cancellationToken).ConfigureAwait(false);
                foreach (var row in JsonSerializer.Deserialize<List<SyncRow>>(text.Length == 0 ? "[]" : text, Json) ?? [])
                {
                    rows.Add(row with { Replica = replica });
                }
            }
            catch (HttpOperationException ex)
            {
                unreachable.Add($"{replica} (HTTP {(int)ex.Response.StatusCode})");
            }
            catch (Exception ex) when (ex is HttpRequestException or JsonException or IOException or (TaskCanceledException and not { CancellationToken.IsCancellationRequested: true }))
            {
                unreachable.Add($"{replica} ({ex.Message})");
            }
        }

        // A sidecar that moved from one replica to another may still be listed by the one it left (until that replica
        // notices the stream is gone): the row seen last is its state.
        var latest = rows.GroupBy(r => r.InstanceId, StringComparer.Ordinal)
            .Select(g => g.MaxBy(r => r.LastSeen)!)
            .OrderBy(r => r.Namespace, StringComparer.Ordinal)
            .ThenBy(r => r.InstanceId, StringComparer.Ordinal)
            .ToList();
        return new FleetStatus(replicas, latest, unreachable);
    }
}

/// <summary>What the replicas said: who was asked, every sidecar once, and who could not be read.</summary>
internal sealed record FleetStatus(IReadOnlyList<string> Replicas, IReadOnlyList<SyncRow> Rows, IReadOnlyList<string> Unreachable);

/// <summary>One row of a replica's /debug/syncz (the control plane's SyncEntry, the fields read here), and the replica that sent it.</summary>
internal sealed record SyncRow(
    string InstanceId,
    string Workload,
    string Namespace,
    string Address,
    string? AckedVersion,
    string? SentVersion,
    string? Status,
    NackRow? LastNack,
    DateTimeOffset LastSeen)
{
    public string Replica { get; init; } = string.Empty;
}

internal sealed record NackRow(string? Error);
