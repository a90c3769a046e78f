using System.Collections.Frozen;
using System.Net;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Configuration;

namespace MeshProxy.Sidecar.Identity;

/// <summary>
/// Which SPIFFE IDs a mesh endpoint may present, per snapshot: for every Service endpoint with a
/// serviceAccount, <c>spiffe://&lt;trustDomain&gt;/ns/&lt;service namespace&gt;/sa/&lt;serviceAccount&gt;</c>
/// plus the Service's subjectAltNames that are SPIFFE IDs. Keyed by the endpoint's address and port, because
/// that is what a new connection knows. An endpoint listed by several Services accepts the union (one
/// workload has one service account, so in a consistent configuration that is one ID plus the Services'
/// extra names). Built once per snapshot, on the first connection that needs it.
/// </summary>
internal sealed class UpstreamIdentities
{
    private static readonly FrozenSet<SpiffeId> None = FrozenSet<SpiffeId>.Empty;
    private Cache? _cache;

    /// <summary>The IDs the endpoint may present; empty (so every server is refused) for an endpoint the snapshot does not list.</summary>
    public IReadOnlySet<SpiffeId> For(SidecarSnapshot snapshot, string host, int port)
    {
        var cache = Volatile.Read(ref _cache);
        if (cache is null || !ReferenceEquals(cache.Snapshot, snapshot))
        {
            cache = new Cache(snapshot, Build(snapshot));
            Volatile.Write(ref _cache, cache);
        }

        return cache.Map.TryGetValue(Key(host, port), out var ids) ? ids : None;
    }

    private static FrozenDictionary<string, FrozenSet<SpiffeId>> Build(SidecarSnapshot snapshot)
    {
        var trustDomain = snapshot.Mesh.TrustDomain;
        var map = new Dictionary<string, HashSet<SpiffeId>>(StringComparer.Ordinal);
        foreach (var service in snapshot.Resources.OfType<ServiceResource>())
        {
            var extra = service.Spec.SubjectAltNames.Select(n => SpiffeId.TryParse(n, out var id) ? id : null).OfType<SpiffeId>().ToList();
            foreach (var endpoint in service.Spec.Endpoints)
            {
                if (endpoint.ServiceAccount is not { } account)
                {
                    continue;
                }

                SpiffeId? own = null;
                try
                {
                    own = SpiffeId.ForWorkload(trustDomain, service.Metadata.Namespace, account);
                }
                catch (FormatException)
                {
                    // A service account that cannot form an ID leaves only the subjectAltNames: fail closed, not open.
                }

                foreach (var port in service.Spec.Ports)
                {
                    var key = Key(endpoint.Address, endpoint.Port ?? port.TargetPort);
                    if (!map.TryGetValue(key, out var ids))
                    {
                        map[key] = ids = [];
                    }

                    if (own is not null)
                    {
                        ids.Add(own);
                    }

                    ids.UnionWith(extra);
                }
            }
        }

        return map.ToFrozenDictionary(e => e.Key, e => e.Value.ToFrozenSet(), StringComparer.Ordinal);
    }

    private static string Key(string host, int port)
    {
        var trimmed = host.StartsWith('[') && host.EndsWith(']') ? host[1..^1] : host;
        var normal = IPAddress.TryParse(trimmed, out var ip) ? ip.ToString() : trimmed.ToLowerInvariant();
        return $"{normal}:{port}";
    }

    private sealed record Cache(SidecarSnapshot Snapshot, FrozenDictionary<string, FrozenSet<SpiffeId>> Map);
}
