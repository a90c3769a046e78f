using System.Collections.Concurrent;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// What one sidecar tells the other about its workload, so that both report who talked to whom (Istio
/// does this with x-envoy-peer-metadata, a base64 protobuf of the whole node metadata; we send only the
/// labels the metrics need). Header <see cref="HeaderName"/>, on requests from an outbound sidecar and on
/// responses from an inbound one: <c>v1;workload;namespace;canonical-service;canonical-revision;app;version</c>,
/// an empty field for a value the workload does not have.
/// Trust rules (enforced by the callers): read only from a peer authenticated by mTLS, and only when its
/// namespace is the one in its certificate; sent only over mTLS to mesh endpoints, never to egress; removed
/// before a request reaches the app and before a response reaches the calling app.
/// </summary>
internal sealed class PeerMetadata
{
    public const string HeaderName = "x-meshproxy-peer";

    private const string Version1 = "v1";
    private const int MaxField = 253;
    private const int MaxCached = 1024;

    // Parsed values by header text: a peer sends the same text on every request, so its label strings are
    // the same instances each time (the metrics find their series by reference) and parsing happens once.
    private static readonly ConcurrentDictionary<string, PeerMetadata> Cache = new(StringComparer.Ordinal);

    private PeerMetadata(string workload, string ns, string? canonicalService, string? canonicalRevision, string? app, string? version)
    {
        Workload = workload;
        Namespace = ns;
        CanonicalService = canonicalService;
        CanonicalRevision = canonicalRevision;
        App = app;
        Version = version;
    }

    public string Workload { get; }

    public string Namespace { get; }

    public string? CanonicalService { get; }

    public string? CanonicalRevision { get; }

    public string? App { get; }

    public string? Version { get; }

    /// <summary>This workload's header value: built once per snapshot.</summary>
    public static string Encode(string workload, string ns, string? canonicalService, string? canonicalRevision, string? app, string? version) =>
        string.Join(';', Version1, workload, ns, canonicalService ?? "", canonicalRevision ?? "", app ?? "", version ?? "");

    /// <summary>The metadata in a header value, or null when it is malformed (which is ignored, never an error).</summary>
    public static PeerMetadata? Parse(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        if (Cache.TryGetValue(value, out var cached))
        {
            return cached;
        }

        var parsed = ParseUncached(value);
        if (parsed is not null)
        {
            // Bounded: a peer cannot grow it without limit by varying its header.
            if (Cache.Count >= MaxCached)
            {
                Cache.Clear();
            }

            Cache.TryAdd(value, parsed);
        }

        return parsed;
    }

    private static PeerMetadata? ParseUncached(string value)
    {
        var fields = value.Split(';');
        if (fields.Length != 7 || fields[0] != Version1 || fields.Any(f => f.Length > MaxField || !f.All(IsLabelChar)))
        {
            return null;
        }

        if (fields[1].Length == 0 || fields[2].Length == 0)
        {
            return null;
        }

        return new PeerMetadata(fields[1], fields[2], OrNull(fields[3]), OrNull(fields[4]), OrNull(fields[5]), OrNull(fields[6]));
    }

    // Kubernetes names and label values: letters, digits, '-', '_', '.'.
    private static bool IsLabelChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.';

    private static string? OrNull(string field) => field.Length == 0 ? null : field;
}
