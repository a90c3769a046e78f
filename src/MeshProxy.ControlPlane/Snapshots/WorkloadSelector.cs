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
/// <item>PeerAuthentication: the policies in effect by Istio's precedence (<see cref="PeerAuthenticationResolver.InEffect"/>),
/// for the workload and for the sidecar endpoints of every Service it may call (auto mTLS).</item>
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

    public static List<StoredResource> Select(ConfigState state, Workload workload) => Select(new SelectionIndex(state), workload);

    public static List<StoredResource> Select(SelectionIndex index, Workload workload)
    {
        var state = index.State;
        var mesh = index.Mesh;
        var egress = index.SidecarEgress(workload);

        // Sets by reference: StoredResource is a record, and hashing one by value hashes its whole YAML text
        // (at 1000 Services that was most of the control plane's CPU after each change: benchmarks/RESULTS.md).
        var reachable = new HashSet<StoredResource>(ReferenceEqualityComparer.Instance);
        if (egress is null)
        {
            reachable.UnionWith(index.Services);
        }
        else
        {
            foreach (var entry in egress)
            {
                // An exact host is looked up; only a wildcard is matched against every Service. With a Sidecar scope
                // per workload, matching each entry against each Service made this O(workloads x Services) per change.
                var candidates = entry.Host.Contains('*', StringComparison.Ordinal) ? index.Services
                    : index.ServicesByHost.GetValueOrDefault(entry.Host) ?? [];
                foreach (var service in candidates)
                {
                    if (!reachable.Contains(service) && Allowed(entry, workload, (ServiceResource)service.Resource))
                    {
                        reachable.Add(service);
                    }
                }
            }
        }

        var selectedRoutes = new HashSet<StoredResource>(ReferenceEqualityComparer.Instance);

        // A route is sent with every service it names (its hosts, its destinations and its mirrors), or the sidecar
        // could not build it; those services bring their own routes in turn, until nothing changes.
        for (var changed = true; changed;)
        {
            changed = false;
            foreach (var route in index.Routes)
            {
                var spec = ((HttpRouteResource)route.Resource).Spec;
                if (selectedRoutes.Contains(route) || !spec.Hosts.Any(h => index.FirstService(h) is { } s && reachable.Contains(s)))
                {
                    continue;
                }

                selectedRoutes.Add(route);
                changed = true;
                foreach (var host in spec.Hosts.Concat(spec.Http.SelectMany(r => r.Route).Select(d => d.Host)).Concat(spec.Http.Select(r => r.Mirror?.Host).OfType<string>()))
                {
                    if (index.FirstService(host) is { } target)
                    {
                        reachable.Add(target);
                    }
                }
            }
        }

        var reachableHosts = reachable.SelectMany(s => ((ServiceResource)s.Resource).Spec.Hosts).ToHashSet(StringComparer.OrdinalIgnoreCase);
        // PeerAuthentication is resolved here, not per resource: only the policies in effect for this workload (one
        // per level at most: mesh, namespace, workload) are sent, so a second namespace-wide policy that loses to the
        // first by name never reaches the sidecar, and changing it pushes nothing.
        var peerAuthentication = PeerAuthenticationResolver.InEffect(index.PeerAuthentications, workload.Namespace, workload.Labels, mesh.RootNamespace).ToHashSet();

        // Auto mTLS: the policies in effect for the sidecars this workload calls travel too, so that it sends plaintext
        // to a port its destination puts in DISABLE (and mTLS to STRICT and PERMISSIVE), and is pushed again when
        // their mode changes. The sidecar resolves its own inbound modes from the same set with its own namespace and
        // labels, so the extra policies never change those.
        foreach (var service in reachable)
        {
            peerAuthentication.UnionWith(index.DestinationPeerAuthentications(service));
        }

        var result = new List<StoredResource>();
        foreach (var r in state.Resources)
        {
            var include = r.Resource switch
            {
                PeerAuthenticationResource pa => peerAuthentication.Contains(pa),
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

    private static bool Allowed(EgressHost entry, Workload workload, ServiceResource service)
    {
        foreach (var host in service.Spec.Hosts)
        {
            if (entry.Matches(workload.Namespace, service.Metadata.Namespace, host))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>
/// What every workload's selection reads from one configuration state (the Services, routes, hosts and Sidecar
/// scopes), computed once per state: the selection runs once per workload, and at a thousand Services rebuilding
/// these for each of them cost more than the selection itself.
/// </summary>
internal sealed class SelectionIndex
{
    private readonly Dictionary<(string Namespace, string Workload), SidecarResource> _sidecars = [];

    public SelectionIndex(ConfigState state)
    {
        State = state;
        Mesh = state.Resources.Select(r => r.Resource).OfType<MeshConfigResource>().FirstOrDefault()?.Spec ?? MeshConfigSpec.Default;
        Services = [.. state.Resources.Where(r => r.Resource is ServiceResource)];
        Routes = [.. state.Resources.Where(r => r.Resource is HttpRouteResource)];
        PeerAuthentications = [.. state.Resources.Select(r => r.Resource).OfType<PeerAuthenticationResource>()];
        foreach (var s in Services)
        {
            foreach (var host in ((ServiceResource)s.Resource).Spec.Hosts)
            {
                if (!ServicesByHost.TryGetValue(host, out var all))
                {
                    ServicesByHost[host] = all = [];
                }

                all.Add(s);
            }
        }

        foreach (var sidecar in state.Resources.Select(r => r.Resource).OfType<SidecarResource>())
        {
            _sidecars.TryAdd((sidecar.Metadata.Namespace, sidecar.Spec.Workload.Name), sidecar); // the first one wins, as before
        }
    }

    public ConfigState State { get; }

    public List<PeerAuthenticationResource> PeerAuthentications { get; }

    private readonly Dictionary<StoredResource, PeerAuthenticationResource[]> _destinationPeerAuthentications = new(ReferenceEqualityComparer.Instance);

    /// <summary>
    /// The PeerAuthentications in effect for the sidecar endpoints (those with a service account) of a Service,
    /// computed once per state and Service (every workload that reaches the Service asks).
    /// </summary>
    public PeerAuthenticationResource[] DestinationPeerAuthentications(StoredResource service)
    {
        lock (_destinationPeerAuthentications)
        {
            if (!_destinationPeerAuthentications.TryGetValue(service, out var result))
            {
                var resource = (ServiceResource)service.Resource;
                result = PeerAuthentications.Count == 0 ? [] : [.. resource.Spec.Endpoints
                    .Where(e => e.ServiceAccount is not null)
                    .SelectMany(e => PeerAuthenticationResolver.InEffect(PeerAuthentications, resource.Metadata.Namespace, e.Labels, Mesh.RootNamespace))
                    .Distinct()];
                _destinationPeerAuthentications[service] = result;
            }

            return result;
        }
    }

    public MeshConfigSpec Mesh { get; }

    public List<StoredResource> Services { get; }

    public List<StoredResource> Routes { get; }

    /// <summary>The first Service naming the host: where a route's host or destination goes.</summary>
    public StoredResource? FirstService(string host) => ServicesByHost.TryGetValue(host, out var all) ? all[0] : null;

    /// <summary>Every Service naming each host (a short name is a host in each namespace that has it): what an egress entry may reach.</summary>
    public Dictionary<string, List<StoredResource>> ServicesByHost { get; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The egress hosts of the workload's Sidecar resource; null without one (or without egress): every Service.</summary>
    public IReadOnlyList<EgressHost>? SidecarEgress(Workload workload) =>
        _sidecars.TryGetValue((workload.Namespace, workload.Name), out var sidecar) ? sidecar.Spec.Egress : null;
}
