using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Resources;

namespace MeshProxy.ControlPlane.Snapshots;

/// <summary>
/// Decides which resources concern one workload. Two families:
/// <list type="bullet">
/// <item>What it may call: the Services its Sidecar egress allows (all of them without one), the
/// HttpRoutes for those services, every Service those routes send to, and the DestinationPolicies of
/// those services' hosts.</item>
/// <item>What applies to it: each kind in <see cref="AppliesTo"/>, one predicate per kind. A new
/// workload-selected kind (AuthorizationPolicy, say) is one more entry there.</item>
/// </list>
/// Sidecar resources are never sent: a sidecar has its own, from its bootstrap; the control plane's
/// copies only scope what their workload may reach.
/// </summary>
internal static class WorkloadSelector
{
    private delegate bool Selects(Resource resource, Workload workload, MeshConfigSpec mesh);

    private static readonly Dictionary<string, Selects> AppliesTo = new(StringComparer.Ordinal)
    {
        [MeshConfigResource.KindName] = (_, _, _) => true,
        [EgressPolicyResource.KindName] = (r, w, mesh) =>
            InScope(r, w, mesh) && ((EgressPolicyResource)r).Spec.Selects(w.Labels),
        [AuthorizationPolicyResource.KindName] = (r, w, mesh) =>
            InScope(r, w, mesh) && ((AuthorizationPolicyResource)r).Spec.MatchLabels.All(l => w.Labels.TryGetValue(l.Key, out var v) && v == l.Value),
        [RequestAuthenticationResource.KindName] = (r, w, mesh) =>
            InScope(r, w, mesh) && ((RequestAuthenticationResource)r).Spec.Selects(w.Labels),
    };

    public static List<StoredResource> Select(ConfigState state, Workload workload)
    {
        var mesh = state.Resources.Select(r => r.Resource).OfType<MeshConfigResource>().FirstOrDefault()?.Spec ?? MeshConfigSpec.Default;
        var egress = state.Resources.Select(r => r.Resource).OfType<SidecarResource>()
            .FirstOrDefault(s => s.Metadata.Namespace == workload.Namespace && s.Spec.Workload.Name == workload.Name)?.Spec.Egress;

        var services = state.Resources.Where(r => r.Resource is ServiceResource).ToList();
        var routes = state.Resources.Where(r => r.Resource is HttpRouteResource).ToList();
        var serviceByHost = new Dictionary<string, StoredResource>(StringComparer.OrdinalIgnoreCase);
        foreach (var s in services)
        {
            foreach (var host in ((ServiceResource)s.Resource).Spec.Hosts)
            {
                serviceByHost.TryAdd(host, s);
            }
        }

        var reachable = new HashSet<StoredResource>(services.Where(s => egress is null || Allowed(egress, workload, (ServiceResource)s.Resource)));
        var selectedRoutes = new HashSet<StoredResource>();

        // A route is sent with every service it names (its hosts and its destinations), or the sidecar
        // could not build it; those services bring their own routes in turn, until nothing changes.
        for (var changed = true; changed;)
        {
            changed = false;
            foreach (var route in routes)
            {
                var spec = ((HttpRouteResource)route.Resource).Spec;
                if (selectedRoutes.Contains(route) || !spec.Hosts.Any(h => serviceByHost.TryGetValue(h, out var s) && reachable.Contains(s)))
                {
                    continue;
                }

                selectedRoutes.Add(route);
                changed = true;
                foreach (var host in spec.Hosts.Concat(spec.Http.SelectMany(r => r.Route).Select(d => d.Host)))
                {
                    if (serviceByHost.TryGetValue(host, out var target))
                    {
                        reachable.Add(target);
                    }
                }
            }
        }

        var reachableHosts = reachable.SelectMany(s => ((ServiceResource)s.Resource).Spec.Hosts).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var result = new List<StoredResource>();
        foreach (var r in state.Resources)
        {
            var include = r.Resource switch
            {
                ServiceResource => reachable.Contains(r),
                HttpRouteResource => selectedRoutes.Contains(r),
                DestinationPolicyResource dp => reachableHosts.Contains(dp.Spec.Host),
                SidecarResource => false,
                _ => AppliesTo.TryGetValue(r.Resource.Kind, out var applies) && applies(r.Resource, workload, mesh),
            };
            if (include)
            {
                result.Add(r);
            }
        }

        return result;
    }

    /// <summary>A policy in the workload's namespace, or in the root namespace (mesh-wide).</summary>
    private static bool InScope(Resource resource, Workload workload, MeshConfigSpec mesh) =>
        resource.Metadata.Namespace == workload.Namespace || resource.Metadata.Namespace == mesh.RootNamespace;

    private static bool Allowed(IReadOnlyList<EgressHost> egress, Workload workload, ServiceResource service) =>
        egress.Any(e => service.Spec.Hosts.Any(h => e.Matches(workload.Namespace, service.Metadata.Namespace, h)));
}
