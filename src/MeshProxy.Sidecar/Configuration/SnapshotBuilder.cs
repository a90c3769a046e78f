using System.Collections.Frozen;
using System.Net;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Config.Validation;
using MeshProxy.Authorization;
using MeshProxy.Sidecar.Authentication;
using MeshProxy.Sidecar.Egress;
using MeshProxy.Sidecar.LoadBalancing;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Configuration;

/// <summary>
/// Turns validated resources into the runtime model. What only the whole set can show (a route to a
/// service that does not exist, two services claiming one host...) is checked by the shared
/// <see cref="ResourceSetValidator"/>, the control plane's pre-push check. Any error refuses the whole
/// snapshot, so a request never meets a half-applied configuration.
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
        // Every cross-resource check is the shared one, which the control plane also runs before it
        // pushes: what passes there is never refused here. Past this point the set is known to build.
        errors.AddRange(ResourceSetValidator.Validate(parsed.Resources).Select(p => p.Diagnostic));
        if (errors.Count > 0)
        {
            throw new ConfigException(errors);
        }

        var services = parsed.OfKind<ServiceResource>().ToList();
        var byHost = ResourceSetValidator.IndexHosts(services);
        var clusters = BuildClusters(services, parsed.OfKind<DestinationPolicyResource>(), byHost,
            parsed.OfKind<PeerAuthenticationResource>().ToList(), parsed.OfKind<MeshConfigResource>().FirstOrDefault());
        var routesByService = BuildRoutes(parsed.OfKind<HttpRouteResource>(), byHost, clusters);

        var hosts = new Dictionary<string, HostEntry>(StringComparer.OrdinalIgnoreCase);
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

        var app = sidecar.Spec.App;
        var inbound = new Cluster(
            $"inbound|{app.Port}||",
            sidecar.Spec.Workload.Name,
            sidecar.Spec.Workload.Namespace,
            app.Protocol,
            [new UpstreamEndpoint("127.0.0.1", app.Port, 1, null)],
            new ClusterState());

        var mesh = parsed.OfKind<MeshConfigResource>().FirstOrDefault()?.Spec ?? MeshConfigSpec.Default;
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
            ExternalAuthorization = ExternalAuthorization.ExternalAuthorizationProviders.Build(authorization, mesh, workload),
            Authentication = RequestAuthenticator.Build(
                parsed.OfKind<RequestAuthenticationResource>(), workload.Namespace, workload.Labels, mesh.RootNamespace),
            Egress = EgressRules.Compile(parsed.OfKind<EgressPolicyResource>(), sidecar, mesh),
            InboundMtls = PeerAuthenticationResolver.Resolve(
                parsed.OfKind<PeerAuthenticationResource>(), workload.Namespace, workload.Labels, parsed.OfKind<MeshConfigResource>().FirstOrDefault()),
            Resources = parsed.Resources,
        };
    }

    /// <summary>
    /// Auto mTLS, as Istio's: a sidecar endpoint is called over mTLS unless the PeerAuthentication in effect for it
    /// (its namespace and labels, the port it listens on; the control plane sends the destinations' policies) puts
    /// that port in DISABLE, where its sidecar takes plaintext only: the endpoint is then called in plaintext, as one
    /// outside the mesh is (no identity to expect). STRICT and PERMISSIVE get mTLS.
    /// </summary>
    private static string? MtlsIdentity(ServiceEndpoint endpoint, string serviceNamespace, int port, List<PeerAuthenticationResource> policies, MeshConfigResource? meshConfig) =>
        endpoint.ServiceAccount is null
        || (policies.Count == 0 && meshConfig?.Spec.Mtls != MtlsMode.Disable)
        || PeerAuthenticationResolver.Resolve(policies, serviceNamespace, endpoint.Labels, meshConfig).For(port).Mode != MtlsMode.Disable
            ? endpoint.ServiceAccount
            : null;

    private static Dictionary<(ServiceResource, int), Cluster> BuildClusters(
        List<ServiceResource> services, IEnumerable<DestinationPolicyResource> policies, Dictionary<string, ServiceResource> byHost,
        List<PeerAuthenticationResource> peerAuthentications, MeshConfigResource? meshConfig)
    {
        // Validated: each policy names a known host, and no service has two.
        var policyOf = policies.ToDictionary(p => byHost[p.Spec.Host], p => p.Spec);
        var clusters = new Dictionary<(ServiceResource, int), Cluster>();
        foreach (var service in services)
        {
            var fqdn = $"{service.Metadata.Name}.{service.Metadata.Namespace}.svc.cluster.local";
            var clusterPolicy = ClusterPolicy.From(policyOf.GetValueOrDefault(service));
            foreach (var port in service.Spec.Ports)
            {
                var endpoints = service.Spec.Endpoints
                    .Select(e => new UpstreamEndpoint(e.Address, e.Port ?? port.TargetPort, e.Weight,
                        MtlsIdentity(e, service.Metadata.Namespace, e.Port ?? port.TargetPort, peerAuthentications, meshConfig)))
                    .ToList();
                clusters[(service, port.Port)] = new Cluster(
                    $"outbound|{port.Port}||{fqdn}", service.Metadata.Name, service.Metadata.Namespace, port.Protocol, endpoints, new ClusterState(), clusterPolicy);
            }
        }

        return clusters;
    }

    private static Dictionary<ServiceResource, List<RouteRule>> BuildRoutes(
        IEnumerable<HttpRouteResource> routes,
        Dictionary<string, ServiceResource> byHost,
        Dictionary<(ServiceResource, int), Cluster> clusters)
    {
        // Validated: every host and destination resolves, each destination to one of its service's ports,
        // and no service is routed twice (a route may list two hosts of one service).
        var result = new Dictionary<ServiceResource, List<RouteRule>>();
        foreach (var route in routes)
        {
            var rules = new List<RouteRule>();
            foreach (var rule in route.Spec.Http)
            {
                var destinations = new List<WeightedCluster>();
                foreach (var destination in rule.Route)
                {
                    var target = byHost[destination.Host];
                    if (destination.Weight > 0)
                    {
                        destinations.Add(new WeightedCluster(clusters[(target, ResourceSetValidator.DestinationPort(destination, target)!.Value)], destination.Weight));
                    }
                }

                if (destinations.Count > 0 || rule.Redirect is not null)
                {
                    var mirror = rule.Mirror is { } m
                        ? new RouteMirror(clusters[(byHost[m.Host], ResourceSetValidator.DestinationPort(m.Port, byHost[m.Host])!.Value)], m.Percentage)
                        : null;
                    rules.Add(new RouteRule(rule.Name, rule.Match, destinations, rule.Timeout, rule.Retries, RouteFilters.From(rule), mirror));
                }
            }

            foreach (var host in route.Spec.Hosts)
            {
                result[byHost[host]] = rules;
            }
        }

        return result;
    }
}
