using System.Collections.Frozen;
using System.Net;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Authorization;
using MeshProxy.Sidecar.Egress;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Configuration;

/// <summary>
/// Turns validated resources into the runtime model. Checks what only the whole set can show: a
/// route pointing at a service that does not exist, two services claiming one host. Any such error
/// refuses the whole snapshot, so a request never meets a half-applied configuration.
/// </summary>
internal static class SnapshotBuilder
{
    public static SidecarSnapshot Build(ParseResult parsed, string version, string source, DateTimeOffset now)
    {
        var errors = new List<ConfigDiagnostic>(parsed.Errors);
        var sidecars = parsed.OfKind<SidecarResource>().ToList();
        if (sidecars.Count != 1)
        {
            errors.Add(new ConfigDiagnostic(source, sidecars.Count > 1 ? sidecars[1].Source.Line : 0, "kind",
                sidecars.Count == 0 ? "no Sidecar resource: the configuration must name its workload and app port" : "more than one Sidecar resource"));
            throw new ConfigException(errors);
        }

        var sidecar = sidecars[0];
        var meshConfigs = parsed.OfKind<MeshConfigResource>().ToList();
        if (meshConfigs.Count > 1)
        {
            errors.Add(At(meshConfigs[1], "kind", $"more than one MeshConfig (first at {meshConfigs[0].Source})"));
        }

        var services = parsed.OfKind<ServiceResource>().ToList();
        var clusters = BuildClusters(services, parsed.OfKind<DestinationPolicyResource>().ToList(), errors);
        var routesByService = BuildRoutes(parsed.OfKind<HttpRouteResource>(), services, clusters, errors);

        var hosts = new Dictionary<string, HostEntry>(StringComparer.OrdinalIgnoreCase);
        var hostOwners = new Dictionary<string, ServiceResource>(StringComparer.OrdinalIgnoreCase);
        var addresses = new Dictionary<IPEndPoint, VirtualHost>();
        foreach (var service in services)
        {
            routesByService.TryGetValue(service, out var rules);
            var ports = service.Spec.Ports.ToFrozenDictionary(
                p => p.Port,
                p => new VirtualHost(service.Metadata.Name, service.Metadata.Namespace, p.Port, clusters[(service, p.Port)], rules ?? []));
            var entry = new HostEntry(ports);
            foreach (var host in service.Spec.Hosts)
            {
                if (hostOwners.TryGetValue(host, out var owner))
                {
                    errors.Add(At(service, "spec.hosts", $"host '{host}' is already claimed by Service {owner.Metadata.Namespace}/{owner.Metadata.Name} ({owner.Source})"));
                    continue;
                }

                hostOwners[host] = service;
                hosts[host] = entry;
            }

            // A transparently captured connection names its destination by address: the service's
            // virtual addresses on the service port, and each endpoint on its own port.
            foreach (var port in service.Spec.Ports)
            {
                foreach (var address in service.Spec.Addresses)
                {
                    addresses.TryAdd(new IPEndPoint(IPAddress.Parse(address), port.Port), ports[port.Port]);
                }

                foreach (var endpoint in service.Spec.Endpoints)
                {
                    if (IPAddress.TryParse(endpoint.Address, out var ip))
                    {
                        addresses.TryAdd(new IPEndPoint(ip, endpoint.Port ?? port.TargetPort), ports[port.Port]);
                    }
                }
            }
        }

        if (errors.Count > 0)
        {
            throw new ConfigException(errors);
        }

        var app = sidecar.Spec.App;
        var inbound = new Cluster(
            $"inbound|{app.Port}||",
            sidecar.Spec.Workload.Name,
            sidecar.Spec.Workload.Namespace,
            app.Protocol,
            [new UpstreamEndpoint("127.0.0.1", app.Port, 1, null)]);

        var mesh = meshConfigs.FirstOrDefault()?.Spec ?? MeshConfigSpec.Default;
        var workload = sidecar.Spec.Workload;
        var authorization = AuthorizationEngine.Build(
            parsed.OfKind<AuthorizationPolicyResource>(), workload.Namespace, workload.Labels, mesh.RootNamespace);

        return new SidecarSnapshot
        {
            Version = version,
            Source = source,
            AppliedAt = now,
            Sidecar = sidecar,
            InboundCluster = inbound,
            Services = new ServiceTable(hosts, addresses),
            Mesh = mesh,
            Authorization = authorization,
            Egress = EgressRules.Compile(parsed.OfKind<EgressPolicyResource>(), sidecar, mesh),
            Resources = parsed.Resources,
        };
    }

    private static Dictionary<(ServiceResource, int), Cluster> BuildClusters(
        List<ServiceResource> services, List<DestinationPolicyResource> policies, List<ConfigDiagnostic> errors)
    {
        // A DestinationPolicy names its service by any of the service's hosts; one policy per service.
        var policyOf = new Dictionary<ServiceResource, DestinationPolicyResource>();
        foreach (var policy in policies)
        {
            var service = services.FirstOrDefault(s => s.Spec.Hosts.Contains(policy.Spec.Host, StringComparer.OrdinalIgnoreCase));
            if (service is null)
            {
                errors.Add(At(policy, "spec.host", $"no Service answers to host '{policy.Spec.Host}'"));
            }
            else if (!policyOf.TryAdd(service, policy))
            {
                var other = policyOf[service];
                errors.Add(At(policy, "spec.host", $"Service {service.Metadata.Name} already has DestinationPolicy {other.Metadata.Namespace}/{other.Metadata.Name} ({other.Source})"));
            }
        }

        var clusters = new Dictionary<(ServiceResource, int), Cluster>();
        foreach (var service in services)
        {
            var fqdn = $"{service.Metadata.Name}.{service.Metadata.Namespace}.svc.cluster.local";
            var clusterPolicy = ClusterPolicy.From(policyOf.GetValueOrDefault(service)?.Spec);
            foreach (var port in service.Spec.Ports)
            {
                var endpoints = service.Spec.Endpoints
                    .Select(e => new UpstreamEndpoint(e.Address, e.Port ?? port.TargetPort, e.Weight, e.ServiceAccount))
                    .ToList();
                clusters[(service, port.Port)] = new Cluster(
                    $"outbound|{port.Port}||{fqdn}", service.Metadata.Name, service.Metadata.Namespace, port.Protocol, endpoints, clusterPolicy);
            }
        }

        return clusters;
    }

    private static Dictionary<ServiceResource, List<RouteRule>> BuildRoutes(
        IEnumerable<HttpRouteResource> routes,
        List<ServiceResource> services,
        Dictionary<(ServiceResource, int), Cluster> clusters,
        List<ConfigDiagnostic> errors)
    {
        var byHost = new Dictionary<string, ServiceResource>(StringComparer.OrdinalIgnoreCase);
        foreach (var s in services)
        {
            foreach (var h in s.Spec.Hosts)
            {
                byHost.TryAdd(h, s);
            }
        }

        var result = new Dictionary<ServiceResource, List<RouteRule>>();
        var routedBy = new Dictionary<ServiceResource, HttpRouteResource>();
        foreach (var route in routes)
        {
            for (var h = 0; h < route.Spec.Hosts.Count; h++)
            {
                var host = route.Spec.Hosts[h];
                if (!byHost.TryGetValue(host, out var service))
                {
                    errors.Add(At(route, $"spec.hosts[{h}]", $"no Service answers to host '{host}'"));
                    continue;
                }

                if (routedBy.TryGetValue(service, out var other))
                {
                    if (other != route)
                    {
                        errors.Add(At(route, $"spec.hosts[{h}]", $"Service {service.Metadata.Name} is already routed by HttpRoute {other.Metadata.Namespace}/{other.Metadata.Name} ({other.Source})"));
                    }

                    continue;
                }

                routedBy[service] = route;
                var rules = new List<RouteRule>();
                for (var r = 0; r < route.Spec.Http.Count; r++)
                {
                    var rule = route.Spec.Http[r];
                    var destinations = new List<WeightedCluster>();
                    for (var d = 0; d < rule.Route.Count; d++)
                    {
                        var destination = rule.Route[d];
                        var field = $"spec.http[{r}].route[{d}].destination";
                        if (!byHost.TryGetValue(destination.Host, out var target))
                        {
                            errors.Add(At(route, $"{field}.host", $"no Service answers to host '{destination.Host}'"));
                            continue;
                        }

                        var port = destination.Port ?? (target.Spec.Ports.Count == 1 ? target.Spec.Ports[0].Port : (int?)null);
                        if (port is null || !clusters.TryGetValue((target, port.Value), out var cluster))
                        {
                            errors.Add(At(route, $"{field}.port.number", port is null
                                ? $"Service {target.Metadata.Name} has several ports; say which one"
                                : $"Service {target.Metadata.Name} has no port {port}"));
                            continue;
                        }

                        if (destination.Weight > 0)
                        {
                            destinations.Add(new WeightedCluster(cluster, destination.Weight));
                        }
                    }

                    if (destinations.Count > 0)
                    {
                        rules.Add(new RouteRule(rule.Name, rule.Match, destinations, rule.Timeout, rule.Retries));
                    }
                }

                result[service] = rules;
            }
        }

        return result;
    }

    private static ConfigDiagnostic At(Resource resource, string field, string reason) =>
        new(resource.Source.File, resource.Source.Line, field, reason);
}
