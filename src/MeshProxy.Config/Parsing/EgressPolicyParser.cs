using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Parsing;

internal static class EgressPolicyParser
{
    private static readonly IReadOnlyList<string> Protocols = ["HTTP", "HTTPS", "TLS", "TCP"];

    public static Resource? Parse(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        IReadOnlyDictionary<string, string>? selector = null;
        if (spec.Map("selector") is { } selectorMap)
        {
            selector = selectorMap.StringMap("matchLabels");
            selectorMap.Finish();
        }

        var hosts = spec.Strings("hosts", required: true);
        for (var i = 0; i < hosts.Count; i++)
        {
            // "*" alone would turn the policy into ALLOW_ANY; MeshConfig's outboundTrafficPolicy says that.
            if (hosts[i] == "*" || !ResourceParser.IsHostName(hosts[i]))
            {
                spec.Sink.Error(spec.Find("hosts"), $"{spec.Child("hosts")}[{i}]",
                    $"'{hosts[i]}' is not a host name or a '*.domain' wildcard");
            }
        }

        var ports = new List<EgressPort>();
        foreach (var p in spec.Maps("ports", required: true))
        {
            var number = p.Port("number", required: true) ?? 0;
            var protocol = p.Enum("protocol", Protocols, required: true) switch
            {
                "HTTPS" => EgressProtocol.Https,
                "TLS" => EgressProtocol.Tls,
                "TCP" => EgressProtocol.Tcp,
                _ => EgressProtocol.Http,
            };
            p.String("name");
            p.Finish();
            ports.Add(new EgressPort(number, protocol));
        }

        if (ports.GroupBy(p => p.Number).FirstOrDefault(g => g.Count() > 1) is { } dup)
        {
            spec.Error("ports", $"port {dup.Key} is listed twice");
        }

        return new EgressPolicyResource(meta, source, new EgressPolicySpec(selector, hosts, ports));
    }
}
