namespace MeshProxy.Metrics.Istio;

/// <summary>
/// Istio's label names, in the order istio-proxy's stats filter emits them
/// (istio/proxy source/extensions/filters/http/istio_stats/istio_stats.cc: populatePeerInfo, then log()).
/// </summary>
public static class IstioLabelNames
{
    /// <summary>What Istio exports for a value it does not know.</summary>
    public const string Unknown = "unknown";

    /// <summary>What Istio exports for an unknown canonical revision.</summary>
    public const string Latest = "latest";

    /// <summary>The labels both request and TCP metrics carry, reporter first.</summary>
    public static IReadOnlyList<string> Workload { get; } =
    [
        "reporter",
        "source_workload",
        "source_canonical_service",
        "source_canonical_revision",
        "source_workload_namespace",
        "source_principal",
        "source_app",
        "source_version",
        "source_cluster",
        "destination_workload",
        "destination_workload_namespace",
        "destination_principal",
        "destination_app",
        "destination_version",
        "destination_service",
        "destination_canonical_service",
        "destination_canonical_revision",
        "destination_service_name",
        "destination_service_namespace",
        "destination_cluster",
    ];

    /// <summary>Labels of istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes.</summary>
    public static IReadOnlyList<string> Request { get; } =
    [
        .. Workload,
        "request_protocol",
        "response_code",
        "grpc_response_status",
        "response_flags",
        "connection_security_policy",
    ];

    /// <summary>Labels of the istio_tcp_* counters.</summary>
    public static IReadOnlyList<string> Tcp { get; } =
    [
        .. Workload,
        "request_protocol",
        "response_flags",
        "connection_security_policy",
    ];
}

/// <summary>
/// Who talked to whom: the <see cref="IstioLabelNames.Workload"/> labels. One side is this workload and
/// constant per config snapshot; keep those strings in the snapshot and reuse the instances, so that a
/// series is found by reference. A missing value is exported as Istio does ("unknown", or "latest" for
/// a canonical revision).
/// </summary>
public readonly struct IstioWorkloadLabels
{
    internal const int Count = 20;

    /// <summary><c>reporter</c>; null is exported as "unknown".</summary>
    public string? Reporter { get; init; }

    /// <summary><c>source_workload</c>; null is exported as "unknown".</summary>
    public string? SourceWorkload { get; init; }

    /// <summary><c>source_canonical_service</c>; null is exported as "unknown".</summary>
    public string? SourceCanonicalService { get; init; }

    /// <summary><c>source_canonical_revision</c>; null is exported as "latest".</summary>
    public string? SourceCanonicalRevision { get; init; }

    /// <summary><c>source_workload_namespace</c>; null is exported as "unknown".</summary>
    public string? SourceWorkloadNamespace { get; init; }

    /// <summary><c>source_principal</c>; null is exported as "unknown".</summary>
    public string? SourcePrincipal { get; init; }

    /// <summary><c>source_app</c>; null is exported as "unknown".</summary>
    public string? SourceApp { get; init; }

    /// <summary><c>source_version</c>; null is exported as "unknown".</summary>
    public string? SourceVersion { get; init; }

    /// <summary><c>source_cluster</c>; null is exported as "unknown".</summary>
    public string? SourceCluster { get; init; }

    /// <summary><c>destination_workload</c>; null is exported as "unknown".</summary>
    public string? DestinationWorkload { get; init; }

    /// <summary><c>destination_workload_namespace</c>; null is exported as "unknown".</summary>
    public string? DestinationWorkloadNamespace { get; init; }

    /// <summary><c>destination_principal</c>; null is exported as "unknown".</summary>
    public string? DestinationPrincipal { get; init; }

    /// <summary><c>destination_app</c>; null is exported as "unknown".</summary>
    public string? DestinationApp { get; init; }

    /// <summary><c>destination_version</c>; null is exported as "unknown".</summary>
    public string? DestinationVersion { get; init; }

    /// <summary><c>destination_service</c>; null is exported as "unknown".</summary>
    public string? DestinationService { get; init; }

    /// <summary><c>destination_canonical_service</c>; null is exported as "unknown".</summary>
    public string? DestinationCanonicalService { get; init; }

    /// <summary><c>destination_canonical_revision</c>; null is exported as "latest".</summary>
    public string? DestinationCanonicalRevision { get; init; }

    /// <summary><c>destination_service_name</c>; null is exported as "unknown".</summary>
    public string? DestinationServiceName { get; init; }

    /// <summary><c>destination_service_namespace</c>; null is exported as "unknown".</summary>
    public string? DestinationServiceNamespace { get; init; }

    /// <summary><c>destination_cluster</c>; null is exported as "unknown".</summary>
    public string? DestinationCluster { get; init; }

    internal string GetValue(int index) => index switch
    {
        0 => Reporter ?? IstioLabelNames.Unknown,
        1 => SourceWorkload ?? IstioLabelNames.Unknown,
        2 => SourceCanonicalService ?? IstioLabelNames.Unknown,
        3 => SourceCanonicalRevision ?? IstioLabelNames.Latest,
        4 => SourceWorkloadNamespace ?? IstioLabelNames.Unknown,
        5 => SourcePrincipal ?? IstioLabelNames.Unknown,
        6 => SourceApp ?? IstioLabelNames.Unknown,
        7 => SourceVersion ?? IstioLabelNames.Unknown,
        8 => SourceCluster ?? IstioLabelNames.Unknown,
        9 => DestinationWorkload ?? IstioLabelNames.Unknown,
        10 => DestinationWorkloadNamespace ?? IstioLabelNames.Unknown,
        11 => DestinationPrincipal ?? IstioLabelNames.Unknown,
        12 => DestinationApp ?? IstioLabelNames.Unknown,
        13 => DestinationVersion ?? IstioLabelNames.Unknown,
        14 => DestinationService ?? IstioLabelNames.Unknown,
        15 => DestinationCanonicalService ?? IstioLabelNames.Unknown,
        16 => DestinationCanonicalRevision ?? IstioLabelNames.Latest,
        17 => DestinationServiceName ?? IstioLabelNames.Unknown,
        18 => DestinationServiceNamespace ?? IstioLabelNames.Unknown,
        19 => DestinationCluster ?? IstioLabelNames.Unknown,
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };
}

/// <summary>The labels of one HTTP or gRPC request, in <see cref="IstioLabelNames.Request"/> order.</summary>
public readonly struct RequestLabels : ILabelSet
{
    // A field, not an auto-property, so that reading one label does not copy all twenty.
    private readonly IstioWorkloadLabels _workload;

    /// <summary>Both workloads and the reporter.</summary>
    public IstioWorkloadLabels Workload { get => _workload; init => _workload = value; }

    /// <summary><c>request_protocol</c>: "http" or "grpc" (null: "http").</summary>
    public string? RequestProtocol { get; init; }

    /// <summary><c>response_code</c>: the HTTP status; 0 when no response was sent, as in Envoy.</summary>
    public int ResponseCode { get; init; }

    /// <summary><c>grpc_response_status</c>: the grpc-status for gRPC, null (exported empty) otherwise.</summary>
    public string? GrpcResponseStatus { get; init; }

    /// <summary><c>response_flags</c>: Envoy's short flags, "-" when none (null: "-").</summary>
    public string? ResponseFlags { get; init; }

    /// <summary><c>connection_security_policy</c>: "mutual_tls", "none" or "unknown" (null: "unknown").</summary>
    public string? ConnectionSecurityPolicy { get; init; }

    int ILabelSet.Count => IstioWorkloadLabels.Count + 5;

    string ILabelSet.GetValue(int index) => index switch
    {
        < IstioWorkloadLabels.Count => _workload.GetValue(index),
        IstioWorkloadLabels.Count => RequestProtocol ?? "http",
        IstioWorkloadLabels.Count + 1 => StatusCodes.ToLabel(ResponseCode),
        IstioWorkloadLabels.Count + 2 => GrpcResponseStatus ?? string.Empty,
        IstioWorkloadLabels.Count + 3 => ResponseFlags ?? "-",
        IstioWorkloadLabels.Count + 4 => ConnectionSecurityPolicy ?? IstioLabelNames.Unknown,
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };
}

/// <summary>The labels of one TCP connection, in <see cref="IstioLabelNames.Tcp"/> order; request_protocol is always "tcp".</summary>
public readonly struct TcpLabels : ILabelSet
{
    // A field, not an auto-property, so that reading one label does not copy all twenty.
    private readonly IstioWorkloadLabels _workload;

    /// <summary>Both workloads and the reporter.</summary>
    public IstioWorkloadLabels Workload { get => _workload; init => _workload = value; }

    /// <summary><c>response_flags</c>: Envoy's short flags, "-" when none (null: "-").</summary>
    public string? ResponseFlags { get; init; }

    /// <summary><c>connection_security_policy</c>: "mutual_tls", "none" or "unknown" (null: "unknown").</summary>
    public string? ConnectionSecurityPolicy { get; init; }

    int ILabelSet.Count => IstioWorkloadLabels.Count + 3;

    string ILabelSet.GetValue(int index) => index switch
    {
        < IstioWorkloadLabels.Count => _workload.GetValue(index),
        IstioWorkloadLabels.Count => "tcp",
        IstioWorkloadLabels.Count + 1 => ResponseFlags ?? "-",
        IstioWorkloadLabels.Count + 2 => ConnectionSecurityPolicy ?? IstioLabelNames.Unknown,
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };
}

/// <summary>Status codes as label strings, cached so that labelling a response never formats a number.</summary>
internal static class StatusCodes
{
    private static readonly string[] Cached = [.. Enumerable.Range(0, 1000).Select(static code => code.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    public static string ToLabel(int code) =>
        (uint)code < (uint)Cached.Length ? Cached[code] : code.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
