using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Validation;

/// <summary>
/// One cross-resource error, with the resource it belongs to (the one that must change or go) and, for a
/// conflict, the earlier resource that keeps the claim.
/// </summary>
public sealed record ResourceProblem(Resource Resource, ConfigDiagnostic Diagnostic, Resource? ConflictsWith = null);

/// <summary>
/// What only the whole set of resources can show, each parsed resource being valid on its own: a route
/// or policy naming a host no Service answers to, a destination port that does not exist, two Services
/// claiming one host, two routes or two DestinationPolicies for one service, two MeshConfigs.
/// <para>
/// The sidecar refuses a snapshot with any of these (it builds its runtime model only from a set that
/// passes here), and the control plane runs the same check before it pushes, so that it can hold back
/// the one resource at fault instead of sending a snapshot every sidecar would refuse. A conflict is
/// always laid on the later resource in the given order: the first one keeps its claim.
/// </para>
/// </summary>
public static class ResourceSetValidator
{
    /// <summary>Every problem, in the order the sidecar reports them; empty when the set can be built.</summary>
    public static IReadOnlyList<ResourceProblem> Validate(IEnumerable<Resource> resources)
    {
        var all = resources as IReadOnlyList<Resource> ?? [.. resources];
        var problems = new List<ResourceProblem>();
        var services = all.OfType<ServiceResource>().ToList();
        var byHost = IndexHosts(services);

        MeshConfig(all, problems);
        DestinationPolicies(all.OfType<DestinationPolicyResource>(), byHost, problems);
        Routes(all.OfType<HttpRouteResource>(), byHost, problems);
        HostClaims(services, problems);
        return problems;
    }

    /// <summary>
    /// Each host to the first Service (in order) that lists it. Conflicting later claims are problems,
    /// but their other hosts still count here, as the sidecar resolves them.
    /// </summary>
    public static Dictionary<string, ServiceResource> IndexHosts(IEnumerable<ServiceResource> services)
    {
        var byHost = new Dictionary<string, ServiceResource>(StringComparer.OrdinalIgnoreCase);
        foreach (var service in services)
        {
            foreach (var host in service.Spec.Hosts)
            {
                byHost.TryAdd(host, service);
            }
        }

        return byHost;
    }

    /// <summary>The port a route destination means: the one it names, or the service's only port; null when that is ambiguous.</summary>
    public static int? DestinationPort(HttpRouteDestination destination, ServiceResource target) => DestinationPort(destination.Port, target);

    /// <summary>The port <paramref name="port"/> means on <paramref name="target"/>: itself, or the service's only port; null when that is ambiguous.</summary>
    public static int? DestinationPort(int? port, ServiceResource target) =>
        port ?? (target.Spec.Ports.Count == 1 ? target.Spec.Ports[0].Port : null);

    private static void MeshConfig(IReadOnlyList<Resource> all, List<ResourceProblem> problems)
    {
        var meshConfigs = all.OfType<MeshConfigResource>().ToList();
        foreach (var extra in meshConfigs.Skip(1))
        {
            problems.Add(At(extra, "kind", $"more than one MeshConfig (first at {meshConfigs[0].Source})", meshConfigs[0]));
        }
    }

    private static void DestinationPolicies(IEnumerable<DestinationPolicyResource> policies, Dictionary<string, ServiceResource> byHost, List<ResourceProblem> problems)
    {
        // A DestinationPolicy names its service by any of the service's hosts; one policy per service.
        var policyOf = new Dictionary<ServiceResource, DestinationPolicyResource>();
        foreach (var policy in policies)
        {
            if (!byHost.TryGetValue(policy.Spec.Host, out var service))
            {
                problems.Add(At(policy, "spec.host", $"no Service answers to host '{policy.Spec.Host}'"));
            }
            else if (!policyOf.TryAdd(service, policy))
            {
                var other = policyOf[service];
                problems.Add(At(policy, "spec.host", $"Service {service.Metadata.Name} already has DestinationPolicy {other.Metadata.Namespace}/{other.Metadata.Name} ({other.Source})", other));
            }
        }
    }

    private static void Routes(IEnumerable<HttpRouteResource> routes, Dictionary<string, ServiceResource> byHost, List<ResourceProblem> problems)
    {
        var routedBy = new Dictionary<ServiceResource, HttpRouteResource>();
        foreach (var route in routes)
        {
            var destinationsChecked = false;
            for (var h = 0; h < route.Spec.Hosts.Count; h++)
            {
                var host = route.Spec.Hosts[h];
                if (!byHost.TryGetValue(host, out var service))
                {
                    problems.Add(At(route, $"spec.hosts[{h}]", $"no Service answers to host '{host}'"));
                    continue;
                }

                if (routedBy.TryGetValue(service, out var other))
                {
                    if (other != route)
                    {
                        problems.Add(At(route, $"spec.hosts[{h}]", $"Service {service.Metadata.Name} is already routed by HttpRoute {other.Metadata.Namespace}/{other.Metadata.Name} ({other.Source})", other));
                    }

                    continue;
                }

                routedBy[service] = route;
                if (!destinationsChecked)
                {
                    // The destinations are the same for every host of the route: one report each, not one per host.
                    destinationsChecked = true;
                    Destinations(route, byHost, problems);
                }
            }
        }
    }

    private static void Destinations(HttpRouteResource route, Dictionary<string, ServiceResource> byHost, List<ResourceProblem> problems)
    {
        for (var r = 0; r < route.Spec.Http.Count; r++)
        {
            var rule = route.Spec.Http[r];
            for (var d = 0; d < rule.Route.Count; d++)
            {
                Destination(route, $"spec.http[{r}].route[{d}].destination", rule.Route[d].Host, rule.Route[d].Port, byHost, problems);
            }

            if (rule.Mirror is { } mirror)
            {
                Destination(route, $"spec.http[{r}].mirror", mirror.Host, mirror.Port, byHost, problems);
            }
        }
    }

    private static void Destination(HttpRouteResource route, string field, string host, int? requested, Dictionary<string, ServiceResource> byHost, List<ResourceProblem> problems)
    {
        if (!byHost.TryGetValue(host, out var target))
        {
            problems.Add(At(route, $"{field}.host", $"no Service answers to host '{host}'"));
            return;
        }

        var port = DestinationPort(requested, target);
        if (port is null || !target.Spec.Ports.Any(p => p.Port == port))
        {
            problems.Add(At(route, $"{field}.port.number", port is null
                ? $"Service {target.Metadata.Name} has several ports; say which one"
                : $"Service {target.Metadata.Name} has no port {port}"));
        }
    }

    private static void HostClaims(List<ServiceResource> services, List<ResourceProblem> problems)
    {
        var owners = new Dictionary<string, ServiceResource>(StringComparer.OrdinalIgnoreCase);
        foreach (var service in services)
        {
            foreach (var host in service.Spec.Hosts)
            {
                if (!owners.TryAdd(host, service))
                {
                    var owner = owners[host];
                    // A service listing one host twice conflicts with nobody else.
                    problems.Add(At(service, "spec.hosts", $"host '{host}' is already claimed by Service {owner.Metadata.Namespace}/{owner.Metadata.Name} ({owner.Source})", owner == service ? null : owner));
                }
            }
        }
    }

    private static ResourceProblem At(Resource resource, string field, string reason, Resource? conflictsWith = null) =>
        new(resource, new ConfigDiagnostic(resource.Source.File, resource.Source.Line, field, reason), conflictsWith);
}
