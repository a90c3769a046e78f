namespace MeshProxy.Config.Resources;

/// <summary>
/// Mesh-wide settings (Istio's MeshConfig, trimmed to what MeshProxy does). At most one per mesh; in
/// standalone mode it may sit in the bootstrap file, and every field has a safe default without it.
/// </summary>
public sealed record MeshConfigResource(ObjectMeta Metadata, SourceLocation Source, MeshConfigSpec Spec) : Resource(Metadata, Source)
{
    public const string KindName = "MeshConfig";

    public override string Kind => KindName;
}

public sealed record MeshConfigSpec(
    string TrustDomain,
    string RootNamespace,
    TimeSpan CertificateTtl,
    TimeSpan MaxCertificateTtl,
    MtlsMode Mtls,
    OutboundTrafficMode OutboundTrafficPolicy,
    AccessLogSpec AccessLog,
    TracingSpec Tracing,
    PathNormalizationSpec PathNormalization)
{
    public static MeshConfigSpec Default { get; } = new(
        "cluster.local",
        "meshproxy-system",
        TimeSpan.FromHours(24),
        TimeSpan.FromHours(48),
        MtlsMode.Strict,
        OutboundTrafficMode.RegistryOnly,
        AccessLogSpec.Default,
        TracingSpec.Default,
        PathNormalizationSpec.Default);

    /// <summary>External services policies can delegate to (Istio's extensionProviders): the CUSTOM action's providers, by name.</summary>
    public IReadOnlyList<ExtensionProvider> ExtensionProviders { get; init; } = [];
}

/// <summary>
/// Inbound mutual TLS: STRICT requires a client certificate; PERMISSIVE also accepts plaintext (for migration);
/// DISABLE accepts plaintext only (PeerAuthentication only: MeshConfig's mesh-wide switch offers the first two).
/// </summary>
public enum MtlsMode
{
    Strict,
    Permissive,
    Disable,
}

/// <summary>What happens to outbound traffic for a destination the mesh does not know (Istio's outboundTrafficPolicy.mode).</summary>
public enum OutboundTrafficMode
{
    RegistryOnly,
    AllowAny,
}

/// <summary>
/// One JSON line per request. <see cref="Path"/> is "/dev/stdout" or a file. Off unless MeshConfig asks
/// for it, as in Istio: a line per request costs about a quarter of the proxy's throughput
/// (benchmarks/RESULTS.md, "Telemetry cost"), which every mesh should choose rather than inherit.
/// </summary>
public sealed record AccessLogSpec(bool Enabled, string Path)
{
    public static AccessLogSpec Default { get; } = new(false, "/dev/stdout");
}

public enum TracePropagation
{
    W3C,
    B3,
    B3Multi,
}

/// <summary>OpenTelemetry tracing: the share of requests sampled, the header format, where spans go (OTLP).</summary>
public sealed record TracingSpec(double SamplingPercent, TracePropagation Propagation, string? OtlpEndpoint)
{
    public static TracingSpec Default { get; } = new(1.0, TracePropagation.W3C, null);
}

/// <summary>
/// How an inbound request's path is brought to the one form that policies match and the app receives
/// (Istio's meshConfig.pathNormalization, plus a choice for ';' path parameters, which Istio leaves alone).
/// The default, <see cref="PathNormalization.Strict"/> with <see cref="PathParameterHandling.Reject"/>,
/// refuses every spelling on which applications are known to disagree rather than guess how the app
/// will read it (src/MeshProxy.Authorization/README.md, "Paths").
/// </summary>
public sealed record PathNormalizationSpec(PathNormalization Normalization, PathParameterHandling PathParameters)
{
    public static PathNormalizationSpec Default { get; } = new(PathNormalization.Strict, PathParameterHandling.Reject);

    /// <summary>
    /// MeshConfig's word for each normalization, the default first. The parser, the CRD schema and
    /// <c>meshproxy explain</c> all read this one table, so a mode cannot be spelled two ways.
    /// </summary>
    public static IReadOnlyList<KeyValuePair<string, PathNormalization>> NormalizationWords { get; } =
    [
        new("STRICT", PathNormalization.Strict),
        new("NONE", PathNormalization.None),
        new("BASE", PathNormalization.Base),
        new("MERGE_SLASHES", PathNormalization.MergeSlashes),
        new("DECODE_AND_MERGE_SLASHES", PathNormalization.DecodeAndMergeSlashes),
    ];

    /// <summary>MeshConfig's word for each way of reading ';', the default first.</summary>
    public static IReadOnlyList<KeyValuePair<string, PathParameterHandling>> PathParameterWords { get; } =
    [
        new("REJECT", PathParameterHandling.Reject),
        new("STRIP", PathParameterHandling.Strip),
        new("KEEP", PathParameterHandling.Keep),
    ];

    /// <summary>As an operator writes it in MeshConfig, e.g. "STRICT, pathParameters REJECT".</summary>
    public string Spelling =>
        $"{NormalizationWords.First(w => w.Value == Normalization).Key}, pathParameters {PathParameterWords.First(w => w.Value == PathParameters).Key}";
}

/// <summary>The normalization steps applied; each option adds to the one before it, except <see cref="Strict"/>.</summary>
public enum PathNormalization
{
    /// <summary>MERGE_SLASHES, and a 400 for '\', %2F and %5C, which applications read in different ways.</summary>
    Strict,

    /// <summary>Nothing changes: policies match the path as sent (Istio's NONE; open to CVE-2021-31920-style bypasses).</summary>
    None,

    /// <summary>RFC 3986: unreserved escapes decoded, hex in uppercase, dot segments resolved, '\' read as '/' (Istio's BASE).</summary>
    Base,

    /// <summary>BASE, then repeated slashes merged (Istio's MERGE_SLASHES).</summary>
    MergeSlashes,

    /// <summary>%2F and %5C decoded to '/' first, then MERGE_SLASHES (Istio's DECODE_AND_MERGE_SLASHES).</summary>
    DecodeAndMergeSlashes,
}

/// <summary>What a ';' in a path means before matching.</summary>
public enum PathParameterHandling
{
    /// <summary>A 400 for ';' raw or encoded: servlet containers cut a segment at ';', most other stacks do not.</summary>
    Reject,

    /// <summary>Each segment's ";..." removed before matching and forwarding, as servlet containers do; %3B still refused.</summary>
    Strip,

    /// <summary>';' is an ordinary character (Istio's behaviour); only for apps that do not cut segments at ';'.</summary>
    Keep,
}

/// <summary>One named extension provider. Only Envoy's gRPC external authorization (envoyExtAuthzGrpc) is supported.</summary>
public sealed record ExtensionProvider(string Name, ExtAuthzGrpcProvider ExtAuthzGrpc);

/// <summary>
/// An external authorization server speaking envoy.service.auth.v3.Authorization/Check over gRPC (h2c), with
/// Istio's envoyExtAuthzGrpc fields. <see cref="Service"/> is a host name (Istio's "namespace/host" form is
/// accepted and the namespace dropped). On an error or timeout the request is allowed when <see cref="FailOpen"/>,
/// else answered with <see cref="StatusOnError"/> (403, Envoy's status_on_error default). The header lists hold
/// Istio's string matches ("name", "prefix*", "*suffix"); empty means every header (what Envoy's gRPC client does).
/// </summary>
public sealed record ExtAuthzGrpcProvider(
    string Service,
    int Port,
    TimeSpan Timeout,
    bool FailOpen,
    int StatusOnError,
    IReadOnlyList<string> IncludeRequestHeadersInCheck,
    IReadOnlyList<string> HeadersToUpstreamOnAllow,
    IReadOnlyList<string> HeadersToDownstreamOnDeny)
{
    /// <summary>Istio's default (10 minutes): a provider written for Istio times out the same way. Set a timeout: a hung server holds requests that long.</summary>
    public static TimeSpan DefaultTimeout { get; } = TimeSpan.FromMinutes(10);

    public const int DefaultStatusOnError = 403;

    /// <summary>Istio's includeRequestBodyInCheck: null sends headers only.</summary>
    public RequestBodyInCheck? IncludeRequestBodyInCheck { get; init; }
}

/// <summary>
/// The request body in the Check (Istio's includeRequestBodyInCheck, Envoy's with_request_body): up to
/// <see cref="MaxRequestBytes"/> are held and sent; a longer body is answered 413 unless
/// <see cref="AllowPartialMessage"/>, which sends its first <see cref="MaxRequestBytes"/>. The app still receives the
/// whole body. <see cref="PackAsBytes"/> sends it as raw_body (bytes) instead of body (a UTF-8 string).
/// </summary>
public sealed record RequestBodyInCheck(int MaxRequestBytes, bool AllowPartialMessage, bool PackAsBytes)
{
    /// <summary>The largest maxRequestBytes taken: each checked request may hold this much in memory until it is forwarded.</summary>
    public const int MaxBytesLimit = 16 * 1024 * 1024;
}
