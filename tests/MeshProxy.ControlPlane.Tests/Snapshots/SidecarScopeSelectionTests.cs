using MeshProxy.Config.Parsing;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Snapshots;

namespace MeshProxy.ControlPlane.Tests.Snapshots;

/// <summary>
/// Which Services a workload with a Sidecar scope (Istio's egress hosts, "namespace/host") may reach. Exact hosts
/// are looked up in an index built once per state, wildcards are matched against every Service: both must give
/// the answer the pattern rules give, for short names that exist in several namespaces too.
/// </summary>
public sealed class SidecarScopeSelectionTests
{
    private const string Services = """
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: cart, namespace: shop }
        spec: { hosts: [cart, cart.shop], ports: [{ port: 80 }], endpoints: [{ address: 10.0.0.1 }] }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: cart, namespace: legacy }
        spec: { hosts: [cart, cart.legacy], ports: [{ port: 80 }], endpoints: [{ address: 10.0.0.2 }] }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: payments, namespace: billing }
        spec: { hosts: [payments.billing, PAYMENTS.example.com], ports: [{ port: 80 }], endpoints: [{ address: 10.0.0.3 }] }
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: search, namespace: shop }
        spec: { hosts: [search.shop], ports: [{ port: 80 }], endpoints: [{ address: 10.0.0.4 }] }

        """;

    [Theory]
    [InlineData(null, "billing/payments shop/cart legacy/cart shop/search")]           // no Sidecar scope: everything
    [InlineData("\"shop/cart\"", "shop/cart")]                                           // a short name in two namespaces: the named one
    [InlineData("\"*/cart\"", "shop/cart legacy/cart")]                                  // any namespace
    [InlineData("\"./cart\"", "shop/cart")]                                              // the workload's own namespace
    [InlineData("\"billing/payments.example.com\"", "billing/payments")]                // hosts match case-insensitively
    [InlineData("\"billing/cart\"", "")]                                                 // the host exists, not in that namespace
    [InlineData("\"*/*.shop\"", "shop/cart shop/search")]                                // a wildcard host
    [InlineData("\"shop/*\", \"billing/payments.billing\"", "billing/payments shop/cart shop/search")]
    public void A_scoped_workload_reaches_the_services_its_egress_hosts_name(string? egress, string expected) =>
        Assert.Equal(expected.Split(' ', StringSplitOptions.RemoveEmptyEntries).Order(StringComparer.Ordinal), Reached(egress, string.Empty));

    [Fact]
    public void A_route_the_workload_reaches_brings_its_mirror_service_along()
    {
        // Without search.shop the sidecar could not build the route (its mirror names a Service it does not know).
        const string route = """
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: HttpRoute
            metadata: { name: cart, namespace: shop }
            spec:
              hosts: [cart.shop]
              http: [{ route: [{ destination: { host: cart.shop } }], mirror: { host: search.shop } }]

            """;

        Assert.Equal(["shop/cart", "shop/search"], Reached("\"shop/cart\"", route));
    }

    private static IOrderedEnumerable<string> Reached(string? egress, string extra)
    {
        var yaml = Services + extra + (egress is null ? string.Empty : $$"""
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: web, namespace: shop }
            spec:
              app: { port: 8080 }
              egress: [{ hosts: [{{egress}}] }]

            """);
        var parsed = ResourceParser.ParseText(yaml, "scope.yaml").ThrowIfInvalid();
        var state = ConfigState.Empty with { Generation = 1, Resources = [.. parsed.Resources.Select(r => new StoredResource(r, string.Empty, "v"))] };

        return WorkloadSelector.Select(state, new Workload("web", "shop", "web", new Dictionary<string, string>()))
            .Where(r => r.Resource.Kind == "Service")
            .Select(r => $"{r.Resource.Metadata.Namespace}/{r.Resource.Metadata.Name}")
            .Order(StringComparer.Ordinal);
    }
}
