using Microsoft.Extensions.Logging;

namespace MeshProxy.Identity.Internal;

// 301-310: this library's range, apart from the ids of the processes that load it (LogEventIdTests).
internal static partial class Log
{
    [LoggerMessage(301, LogLevel.Information, "Generated a new root CA for trust domain {TrustDomain} in {Directory} (expires {NotAfter:O})")]
    public static partial void RootGenerated(ILogger logger, string trustDomain, string directory, DateTimeOffset notAfter);

    [LoggerMessage(302, LogLevel.Information, "Loaded CA '{Subject}' (expires {NotAfter:O}) for trust domain {TrustDomain}")]
    public static partial void CaLoaded(ILogger logger, string subject, DateTimeOffset notAfter, string trustDomain);

    [LoggerMessage(303, LogLevel.Warning, "Refused to sign a certificate for {SpiffeId}: {Reason}: {Message}")]
    public static partial void SigningRefused(ILogger logger, string spiffeId, string reason, string message);

    [LoggerMessage(304, LogLevel.Information, "Issued a certificate for {SpiffeId}, serial {Serial}, valid until {NotAfter:O}")]
    public static partial void Issued(ILogger logger, string spiffeId, string serial, DateTimeOffset notAfter);

    [LoggerMessage(305, LogLevel.Information, "Requested TTL {Requested} for {SpiffeId} is above the maximum; issuing for {Max} instead")]
    public static partial void TtlClamped(ILogger logger, string spiffeId, TimeSpan requested, TimeSpan max);

    [LoggerMessage(306, LogLevel.Warning, "Refused peer certificate ({Role}): {Reason}: {Message}")]
    public static partial void PeerRefused(ILogger logger, string role, string reason, string message);

    [LoggerMessage(307, LogLevel.Information, "Workload certificate for {SpiffeId} rotated: serial {Serial}, valid until {NotAfter:O}; next renewal in {NextRenewal}")]
    public static partial void Rotated(ILogger logger, string spiffeId, string serial, DateTimeOffset notAfter, TimeSpan nextRenewal);

    [LoggerMessage(308, LogLevel.Warning, "Renewing the workload certificate for {SpiffeId} failed (attempt {Attempt}); retrying in {Delay}")]
    public static partial void RenewalFailed(ILogger logger, Exception exception, string spiffeId, int attempt, TimeSpan delay);

    [LoggerMessage(309, LogLevel.Warning, "Bootstrap token refused: no workload holds it")]
    public static partial void TokenRefused(ILogger logger);

    [LoggerMessage(310, LogLevel.Information, "Created a bootstrap token for {Namespace}/{ServiceAccount}")]
    public static partial void TokenCreated(ILogger logger, string @namespace, string serviceAccount);
}
