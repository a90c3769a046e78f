using System.Text.Json;
using System.Text.Json.Serialization;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Resilience;

namespace MeshProxy.Sidecar.Admin;

// The shapes of /config_dump and /certs, named so that System.Text.Json's source generator can write
// them: reflection-based serialization of anonymous types is neither trimming- nor Native-AOT-safe.
// Property names become camelCase (JsonSerializerDefaults.Web), enums are written as their names.

internal sealed record ConfigDump(
    string Version,
    string Source,
    DateTimeOffset AppliedAt,
    bool Stale,
    bool Provisional,
    ConfigDumpRejection? LastError,
    WorkloadSpec Workload,
    ConfigDumpListeners Listeners,
    ConfigDumpInbound Inbound,
    ConfigDumpInboundMtls? InboundMtls,
    IEnumerable<ConfigDumpVirtualHost> VirtualHosts,
    IEnumerable<ConfigDumpResource> Resources);

internal sealed record ConfigDumpRejection(string Version, DateTimeOffset At, string Message, IEnumerable<ConfigDumpError> Errors);

internal sealed record ConfigDumpError(string File, int Line, string Field, string Reason);

internal sealed record ConfigDumpListeners(string? Outbound, string? Inbound, string? Admin, string? Stats);

internal sealed record ConfigDumpInbound(string Cluster, AppProtocol Protocol);

/// <summary>The inbound mTLS mode of every port without a port-level mode (<see cref="Default"/>), and of each port that has one or is the app's.</summary>
internal sealed record ConfigDumpInboundMtls(ConfigDumpMtlsMode Default, IEnumerable<ConfigDumpMtlsPort> Ports);

internal sealed record ConfigDumpMtlsMode(string Mode, string SetBy);

internal sealed record ConfigDumpMtlsPort(int Port, string Mode, string SetBy);

internal sealed record ConfigDumpVirtualHost(
    string Service,
    int Port,
    string Cluster,
    AppProtocol Protocol,
    IEnumerable<ConfigDumpEndpoint> Endpoints,
    ResilienceState Health,
    IEnumerable<ConfigDumpRule> Rules);

internal sealed record ConfigDumpEndpoint(string Address, int Port, int Weight, string? Identity);

internal sealed record ConfigDumpRule(string Name, IEnumerable<ConfigDumpDestination> Destinations, ConfigDumpMirror? Mirror);

/// <summary>A rule's mirror: the cluster copies go to and the percentage of the rule's requests copied.</summary>
internal sealed record ConfigDumpMirror(string Cluster, double Percentage);

internal sealed record ConfigDumpDestination(string Cluster, int Weight);

internal sealed record ConfigDumpResource(string Kind, string Namespace, string Name, string Source);

internal sealed record CertsDump(
    bool Enabled,
    MtlsMode MtlsMode,
    string TrustDomain,
    string? SpiffeId,
    DateTimeOffset? NotBefore,
    DateTimeOffset? NotAfter,
    long? SecondsToExpiry,
    IEnumerable<CertificateDump>? Chain,
    IEnumerable<CertificateDump>? TrustBundle,
    HandshakeCounts Handshakes);

internal sealed record CertificateDump(string Subject, string Issuer, string SerialNumber, DateTimeOffset NotBefore, DateTimeOffset NotAfter, string Sha256);

internal sealed record HandshakeCounts(
    long Inbound,
    long InboundPeerRefused,
    long InboundHandshakeFailures,
    long PlaintextAccepted,
    long PlaintextRefused,
    long TlsRefusedOnDisabledPort,
    long Outbound,
    long OutboundPeerRefused,
    long OutboundHandshakeFailures);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = true, UseStringEnumConverter = true)]
[JsonSerializable(typeof(ConfigDump))]
[JsonSerializable(typeof(CertsDump))]
internal sealed partial class AdminJsonContext : JsonSerializerContext;
