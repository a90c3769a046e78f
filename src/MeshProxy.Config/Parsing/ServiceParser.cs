using System.Net;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Parsing;

internal static class ServiceParser
{
    public static Resource? Parse(ObjectMeta meta, SourceLocation source, YamlMap spec)
    {
        // Like a Kubernetes Service, a mesh service answers to its short name, name.namespace and the
        // cluster-local FQDN unless the operator lists the hosts explicitly.
        var hosts = spec.Strings("hosts");
        if (hosts.Count == 0)
        {
            hosts = [meta.Name, $"{meta.Name}.{meta.Namespace}", $"{meta.Name}.{meta.Namespace}.svc.cluster.local"];
        }
        else
        {
            for (var i = 0; i < hosts.Count; i++)
            {
                if (!ResourceParser.IsHostName(hosts[i]))
                {
                    spec.Sink.Error(spec.Find("hosts"), $"{spec.Child("hosts")}[{i}]", $"'{hosts[i]}' is not a host name");
                }
            }
        }

        var addresses = spec.Strings("addresses");
        for (var i = 0; i < addresses.Count; i++)
        {
            if (!IPAddress.TryParse(addresses[i], out _))
            {
                spec.Sink.Error(spec.Find("addresses"), $"{spec.Child("addresses")}[{i}]", $"'{addresses[i]}' is not an IP address");
            }
        }

        var ports = new List<ServicePort>();
        foreach (var p in spec.Maps("ports", required: true))
        {
            var number = p.Port("port", required: true) ?? 0;
            var protocol = p.Enum("protocol", AppProtocols.Names);
            ports.Add(new ServicePort(
                p.String("name") ?? $"port-{number}",
                number,
                p.Port("targetPort") ?? number,
                AppProtocols.Parse(protocol)));
            p.Finish();
        }

        if (ports.GroupBy(p => p.Port).FirstOrDefault(g => g.Count() > 1) is { } dup)
        {
            spec.Error("ports", $"port {dup.Key} is listed twice");
        }

        var endpoints = new List<ServiceEndpoint>();
        foreach (var e in spec.Maps("endpoints"))
        {
            var address = e.String("address", required: true);
            if (address is not null && !IPAddress.TryParse(address, out _) && !ResourceParser.IsHostName(address))
            {
                e.Error("address", $"'{address}' is neither an IP address nor a host name");
            }

            endpoints.Add(new ServiceEndpoint(
                address ?? string.Empty,
                e.Port("port"),
                e.StringMap("labels"),
                (int)(e.Integer("weight", 1, 1_000_000) ?? 1),
                e.String("serviceAccount")));
            e.Finish();
        }

        return new ServiceResource(meta, source, new ServiceSpec(hosts, addresses, ports, endpoints, spec.Strings("subjectAltNames")));
    }
}
