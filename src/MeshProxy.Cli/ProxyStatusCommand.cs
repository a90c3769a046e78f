using System.Net.Http.Json;
using System.Text.Json;

namespace MeshProxy.Cli;

/// <summary>`meshproxy proxy-status`: /debug/syncz as a table, in the shape of istioctl proxy-status.</summary>
internal static class ProxyStatusCommand
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static async Task<int> RunAsync(Uri controlPlane, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        List<SyncRow>? rows;
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            rows = await http.GetFromJsonAsync<List<SyncRow>>(new Uri(controlPlane, "/debug/syncz"), Json, cancellationToken);
        }
        catch (Exception ex) when (ex is HttpRequestException or JsonException or TaskCanceledException)
        {
            error.WriteLine($"meshproxy proxy-status: cannot read {new Uri(controlPlane, "/debug/syncz")}: {ex.Message}");
            return 1;
        }

        output.Write(Render(rows ?? [], DateTimeOffset.UtcNow));
        return 0;
    }

    internal static string Render(IReadOnlyList<SyncRow> rows, DateTimeOffset now)
    {
        string[] header = ["NAME", "NAMESPACE", "ADDRESS", "VERSION ACKED", "VERSION SENT", "STATUS", "LAST SEEN"];
        var table = new List<string[]> { header };
        foreach (var r in rows)
        {
            var status = r.Status ?? "STALE";
            if (status == "NACK" && r.LastNack?.Error is { } e)
            {
                status = $"NACK ({Truncate(e, 60)})";
            }

            table.Add([r.InstanceId, r.Namespace, r.Address, Or(r.AckedVersion), Or(r.SentVersion), status, Ago(now - r.LastSeen)]);
        }

        var widths = Enumerable.Range(0, header.Length).Select(i => table.Max(row => row[i].Length)).ToArray();
        var text = new System.Text.StringBuilder();
        foreach (var row in table)
        {
            for (var i = 0; i < row.Length; i++)
            {
                text.Append(i == row.Length - 1 ? row[i] : row[i].PadRight(widths[i] + 3));
            }

            text.Append('\n');
        }

        return text.ToString();
    }

    private static string Or(string? version) => string.IsNullOrEmpty(version) ? "-" : version;

    private static string Truncate(string s, int max) => s.Length <= max ? s : s[..(max - 3)] + "...";

    private static string Ago(TimeSpan t) =>
        t.TotalSeconds < 1 ? "now" : t.TotalMinutes < 1 ? $"{(int)t.TotalSeconds}s ago" : t.TotalHours < 1 ? $"{(int)t.TotalMinutes}m ago" : $"{(int)t.TotalHours}h ago";

    internal sealed record SyncRow(
        string InstanceId,
        string Workload,
        string Namespace,
        string Address,
        string? AckedVersion,
        string? SentVersion,
        string? Status,
        NackRow? LastNack,
        DateTimeOffset LastSeen);

    internal sealed record NackRow(string? Error);
}
