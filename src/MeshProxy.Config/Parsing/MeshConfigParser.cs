using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Parsing;

internal static class MeshConfigParser
{
    private static readonly IReadOnlyList<string> MtlsModes = ["STRICT", "PERMISSIVE"];
    private static readonly IReadOnlyList<string> OutboundModes = ["REGISTRY_ONLY", "ALLOW_ANY"];
    private static readonly IReadOnlyList<string> Propagations = ["w3c", "b3", "b3multi"];
    private static readonly IReadOnlyList<string> Normalizations = [.. PathNormalizationSpec.NormalizationWords.Select(w => w.Key)];
    private static readonly IReadOnlyList<string> PathParameterModes = [.. PathNormalizationSpec.PathParameterWords.Select(w => w.Key)];

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
            var normalization = paths.Enum("normalization", Normalizations) is { } word
                ? PathNormalizationSpec.NormalizationWords.First(w => w.Key == word).Value
                : d.PathNormalization.Normalization;
            var parameters = paths.Enum("pathParameters", PathParameterModes) is { } mode
                ? PathNormalizationSpec.PathParameterWords.First(w => w.Key == mode).Value
                : d.PathNormalization.PathParameters;
            pathNormalization = new PathNormalizationSpec(normalization, parameters);
            paths.Finish();
        }

        var result = new MeshConfigSpec(trustDomain, rootNamespace, ttl, maxTtl, mtls, outbound, accessLog, tracing, pathNormalization)
        {
            ExtensionProviders = ExtensionProviders(spec),
        };
        return new MeshConfigResource(meta, source, result);
    }

    /// <summary>
    /// extensionProviders: each needs a unique name and exactly one supported kind. Other Istio kinds (tracing,
    /// envoyExtAuthzHttp, ...) are refused, not ignored: a CUSTOM policy naming one would otherwise fail closed at
    /// run time with nothing in the config to say why.
    /// </summary>
    private static List<ExtensionProvider> ExtensionProviders(YamlMap spec)
    {
        var providers = new List<ExtensionProvider>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in spec.Maps("extensionProviders"))
        {
            var name = entry.String("name", required: true);
            if (name is not null && !names.Add(name))
            {
                entry.Error("name", $"'{name}' names another provider already");
            }

            var grpc = entry.Map("envoyExtAuthzGrpc");
            var others = UnreadKeys(entry, ["name", "envoyExtAuthzGrpc"]);
            foreach (var other in others)
            {
                entry.Error(other, "is not supported; the sidecar's external authorization speaks gRPC (envoyExtAuthzGrpc)");
            }

            if (grpc is null)
            {
                if (others.Count == 0)
                {
                    entry.Error("envoyExtAuthzGrpc", "is required (the one provider kind supported)");
                }

                continue;
            }

            var provider = ExtAuthzGrpc(grpc);
            if (name is not null && provider is not null)
            {
                providers.Add(new ExtensionProvider(name, provider));
            }
        }

        return providers;
    }

    /// <summary>Keys of <paramref name="map"/> other than <paramref name="known"/>, found without reading them (they are not fields the schema has).</summary>
    private static List<string> UnreadKeys(YamlMap map, string[] known) => [.. RawKeys(map).Where(k => !known.Contains(k))];

    private static IEnumerable<string> RawKeys(YamlMap map) =>
        ((YamlDotNet.RepresentationModel.YamlMappingNode)map.Node).Children.Keys
            .OfType<YamlDotNet.RepresentationModel.YamlScalarNode>()
            .Select(k => k.Value ?? string.Empty);

    private static ExtAuthzGrpcProvider? ExtAuthzGrpc(YamlMap grpc)
    {
        var service = grpc.String("service", required: true);
        if (service is not null)
        {
            // Istio's "[namespace/]host": the host is what is dialled.
            var host = service[(service.IndexOf('/', StringComparison.Ordinal) + 1)..];
            if (!IsHost(host))
            {
                grpc.Error("service", $"'{service}' is not a host name or IP address (optionally after 'namespace/')");
                service = null;
            }
            else
            {
                service = host;
            }
        }

        var port = grpc.Port("port", required: true);
        var timeout = grpc.Duration("timeout", TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1)) ?? ExtAuthzGrpcProvider.DefaultTimeout;
        var failOpen = grpc.Bool("failOpen") ?? false;
        var status = StatusOnError(grpc);
        var include = HeaderPatterns(grpc, "includeRequestHeadersInCheck");
        var upstream = HeaderPatterns(grpc, "headersToUpstreamOnAllow");
        var downstream = HeaderPatterns(grpc, "headersToDownstreamOnDeny");
        var body = RequestBody(grpc);
        grpc.Finish();
        return service is null || port is null ? null
            : new ExtAuthzGrpcProvider(service, port.Value, timeout, failOpen, status, include, upstream, downstream) { IncludeRequestBodyInCheck = body };
    }

    /// <summary>
    /// includeRequestBodyInCheck: maxRequestBytes is required (Envoy's max_request_bytes is), since it is memory the
    /// sidecar holds per checked request; it is bounded by <see cref="RequestBodyInCheck.MaxBytesLimit"/>.
    /// </summary>
    private static RequestBodyInCheck? RequestBody(YamlMap grpc)
    {
        if (grpc.Map("includeRequestBodyInCheck") is not { } body)
        {
            return null;
        }

        var max = body.Integer("maxRequestBytes", 1, RequestBodyInCheck.MaxBytesLimit, required: true);
        var partial = body.Bool("allowPartialMessage") ?? false;
        var packAsBytes = body.Bool("packAsBytes") ?? false;
        body.Finish();
        return max is null ? null : new RequestBodyInCheck((int)max.Value, partial, packAsBytes);
    }

    /// <summary>Istio writes statusOnError as a string ("503"); a number is taken too.</summary>
    private static int StatusOnError(YamlMap grpc)
    {
        var text = grpc.String("statusOnError");
        if (text is null)
        {
            return ExtAuthzGrpcProvider.DefaultStatusOnError;
        }

        if (int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var status) && status is >= 200 and <= 599)
        {
            return status;
        }

        grpc.Error("statusOnError", $"'{text}' is not an HTTP status (200-599)");
        return ExtAuthzGrpcProvider.DefaultStatusOnError;
    }

    private static List<string> HeaderPatterns(YamlMap map, string key)
    {
        var values = map.Strings(key);
        var result = new List<string>(values.Count);
        foreach (var value in values)
        {
            var name = value.Trim('*');
            var stars = value.Length - value.Replace("*", string.Empty, StringComparison.Ordinal).Length;
            if (value != "*" && (name.Length == 0 || stars > 1 || name.Contains('*', StringComparison.Ordinal) || !name.All(IsTokenChar)))
            {
                map.Error(key, $"'{value}' is not a header name, 'prefix*', '*suffix' or '*'");
                continue;
            }

            result.Add(value.ToLowerInvariant());
        }

        return result;
    }

    private static bool IsHost(string host) =>
        System.Net.IPAddress.TryParse(host, out _) || ResourceParser.IsDnsLabel(host, 253);

    private static bool IsTokenChar(char c) =>
        char.IsAsciiLetterOrDigit(c) || "!#$%&'+-.^_`|~".Contains(c, StringComparison.Ordinal);
}
