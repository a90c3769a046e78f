using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Parsing;

internal static class MeshConfigParser
{
    private static readonly IReadOnlyList<string> MtlsModes = ["STRICT", "PERMISSIVE"];
    private static readonly IReadOnlyList<string> OutboundModes = ["REGISTRY_ONLY", "ALLOW_ANY"];
    private static readonly IReadOnlyList<string> Propagations = ["w3c", "b3", "b3multi"];
    private static readonly IReadOnlyList<string> Normalizations = ["STRICT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"];
    private static readonly IReadOnlyList<string> PathParameterModes = ["REJECT", "STRIP", "KEEP"];

    public static Resource? Parse(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        var d = MeshConfigSpec.Default;
        var trustDomain = spec.String("trustDomain") ?? d.TrustDomain;
        if (!ResourceParser.IsDnsLabel(trustDomain, 255))
        {
            spec.Error("trustDomain", $"'{trustDomain}' is not a valid trust domain (lowercase letters, digits, '.', '-')");
        }

        var rootNamespace = spec.String("rootNamespace") ?? d.RootNamespace;
        var ttl = spec.Duration("certificateTtl", TimeSpan.FromMinutes(10), TimeSpan.FromDays(365)) ?? d.CertificateTtl;
        var maxTtl = spec.Duration("maxCertificateTtl", TimeSpan.FromMinutes(10), TimeSpan.FromDays(365)) ?? TimeSpan.FromTicks(Math.Max(ttl.Ticks, d.MaxCertificateTtl.Ticks));
        if (ttl > maxTtl)
        {
            spec.Error("certificateTtl", $"{Durations.Format(ttl)} is longer than maxCertificateTtl {Durations.Format(maxTtl)}");
        }

        var mtls = d.Mtls;
        if (spec.Map("mtls") is { } mtlsMap)
        {
            mtls = mtlsMap.Enum("mode", MtlsModes) == "PERMISSIVE" ? MtlsMode.Permissive : MtlsMode.Strict;
            mtlsMap.Finish();
        }

        var outbound = d.OutboundTrafficPolicy;
        if (spec.Map("outboundTrafficPolicy") is { } outboundMap)
        {
            outbound = outboundMap.Enum("mode", OutboundModes) == "ALLOW_ANY" ? OutboundTrafficMode.AllowAny : OutboundTrafficMode.RegistryOnly;
            outboundMap.Finish();
        }

        var accessLog = d.AccessLog;
        if (spec.Map("accessLog") is { } log)
        {
            // Writing an accessLog block turns it on, unless it says enabled: false.
            accessLog = new AccessLogSpec(log.Bool("enabled") ?? true, log.String("path") ?? d.AccessLog.Path);
            log.Finish();
        }

        var tracing = d.Tracing;
        if (spec.Map("tracing") is { } trace)
        {
            var propagation = trace.Enum("propagation", Propagations) switch
            {
                "b3" => TracePropagation.B3,
                "b3multi" => TracePropagation.B3Multi,
                _ => TracePropagation.W3C,
            };
            var endpoint = trace.String("otlpEndpoint");
            if (endpoint is not null && !Uri.TryCreate(endpoint, UriKind.Absolute, out _))
            {
                trace.Error("otlpEndpoint", $"'{endpoint}' is not an absolute URL such as http://127.0.0.1:4318");
            }

            tracing = new TracingSpec(trace.Number("sampling", 0, 100) ?? d.Tracing.SamplingPercent, propagation, endpoint);
            trace.Finish();
        }

        var pathNormalization = d.PathNormalization;
        if (spec.Map("pathNormalization") is { } paths)
        {
            var normalization = paths.Enum("normalization", Normalizations) switch
            {
                "NONE" => PathNormalization.None,
                "BASE" => PathNormalization.Base,
                "MERGE_SLASHES" => PathNormalization.MergeSlashes,
                "DECODE_AND_MERGE_SLASHES" => PathNormalization.DecodeAndMergeSlashes,
                _ => PathNormalization.Strict,
            };
            var parameters = paths.Enum("pathParameters", PathParameterModes) switch
            {
                "STRIP" => PathParameterHandling.Strip,
                "KEEP" => PathParameterHandling.Keep,
                _ => PathParameterHandling.Reject,
            };
            pathNormalization = new PathNormalizationSpec(normalization, parameters);
            paths.Finish();
        }

        return new MeshConfigResource(meta, source, new MeshConfigSpec(trustDomain, rootNamespace, ttl, maxTtl, mtls, outbound, accessLog, tracing, pathNormalization));
    }
}
