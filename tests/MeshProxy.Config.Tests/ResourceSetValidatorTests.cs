using MeshProxy.Config.Parsing;
using MeshProxy.Config.Validation;

namespace MeshProxy.Config.Tests;

/// <summary>
/// The cross-resource checks the sidecar refuses a snapshot for and the control plane runs before it
/// pushes: each case is a set of resources that parse, and the problems expected (resource, field, reason).
/// </summary>
public sealed class ResourceSetValidatorTests
{
    private const string Base = """
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: a, namespace: shop }
        spec:
          ports: [{ port: 80 }]
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: b, namespace: shop }
        spec:
          ports: [{ port: 80 }, { port: 81 }]

        """;

    private static string Route(string name, string hosts, string destination) => $"""
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: {"{"} name: {name}, namespace: shop {"}"}
        spec:
          hosts: [{hosts}]
          http: [{"{"} route: [{"{"} destination: {destination} {"}"}] {"}"}]

        """;

    private static string Mirrored(string name, string mirror) => $"""
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: {"{"} name: {name}, namespace: shop {"}"}
        spec:
          hosts: [a]
          http: [{"{"} route: [{"{"} destination: {"{"} host: a {"}"} {"}"}], mirror: {mirror} {"}"}]

        """;

    private static string DestinationPolicy(string name, string host) => $"""
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: DestinationPolicy
        metadata: {"{"} name: {name}, namespace: shop {"}"}
        spec: {"{"} host: {host} {"}"}

        """;

    private static string Service(string name, string hosts) => $"""
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: {"{"} name: {name}, namespace: shop {"}"}
        spec:
          hosts: [{hosts}]
          ports: [{"{"} port: 80 {"}"}]

        """;

    private static string MeshConfig(string name) => $"""
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: MeshConfig
        metadata: {"{"} name: {name}, namespace: meshproxy-system {"}"}
        spec: {"{"}{"}"}

        """;

    private const string AuthorizationPolicy = """
        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: anyone-from-elsewhere, namespace: shop }
        spec:
          action: ALLOW
          rules: [{ from: [{ source: { namespaces: [no-such-namespace], principals: ["spiffe://x/ns/y/sa/z"] } }] }]

        """;

    /// <summary>Extra resources after <see cref="Base"/>, and each expected problem as "key | field | reason[ | conflicts with key]".</summary>
    public static TheoryData<string, string, string[]> Cases => new()
    {
        { "a valid set", Route("to-b", "a", "{ host: b, port: { number: 81 } }") + DestinationPolicy("a", "a.shop") + MeshConfig("mesh"), [] },
        { "a route to a host no Service answers to", Route("r", "a", "{ host: nowhere }"),
            ["HttpRoute/shop/r | spec.http[0].route[0].destination.host | no Service answers to host 'nowhere'"] },
        { "a route for a host no Service answers to", Route("r", "nowhere", "{ host: a }"),
            ["HttpRoute/shop/r | spec.hosts[0] | no Service answers to host 'nowhere'"] },
        { "a destination port the Service does not have", Route("r", "a", "{ host: a, port: { number: 8080 } }"),
            ["HttpRoute/shop/r | spec.http[0].route[0].destination.port.number | Service a has no port 8080"] },
        { "no port to a Service with several", Route("r", "a", "{ host: b }"),
            ["HttpRoute/shop/r | spec.http[0].route[0].destination.port.number | Service b has several ports; say which one"] },
        { "a mirror to a Service and port that exist", Mirrored("r", "{ host: b, port: { number: 81 } }"), [] },
        { "a mirror to a host no Service answers to", Mirrored("r", "{ host: nowhere }"),
            ["HttpRoute/shop/r | spec.http[0].mirror.host | no Service answers to host 'nowhere'"] },
        { "a mirror without a port to a Service with several", Mirrored("r", "{ host: b }"),
            ["HttpRoute/shop/r | spec.http[0].mirror.port.number | Service b has several ports; say which one"] },
        { "a mirror port the Service does not have", Mirrored("r", "{ host: a, port: { number: 9 } }"),
            ["HttpRoute/shop/r | spec.http[0].mirror.port.number | Service a has no port 9"] },
        { "a route with two hosts of one service reports its destinations once", Route("r", "a, a.shop", "{ host: nowhere }"),
            ["HttpRoute/shop/r | spec.http[0].route[0].destination.host | no Service answers to host 'nowhere'"] },
        { "the second route for one service", Route("first", "a", "{ host: a }") + Route("second", "a.shop", "{ host: a }"),
            ["HttpRoute/shop/second | spec.hosts[0] | Service a is already routed by HttpRoute shop/first (set.yaml:13) | conflicts with HttpRoute/shop/first"] },
        { "a DestinationPolicy for a host no Service answers to", DestinationPolicy("p", "nowhere"),
            ["DestinationPolicy/shop/p | spec.host | no Service answers to host 'nowhere'"] },
        { "the second DestinationPolicy for one service", DestinationPolicy("first", "a") + DestinationPolicy("second", "a.shop.svc.cluster.local"),
            ["DestinationPolicy/shop/second | spec.host | Service a already has DestinationPolicy shop/first (set.yaml:13) | conflicts with DestinationPolicy/shop/first"] },
        { "a Service listing one host twice conflicts with nobody else", Service("c", "c, c"),
            ["Service/shop/c | spec.hosts | host 'c' is already claimed by Service shop/c (set.yaml:13)"] },
        { "a host claimed by a second Service", Service("c", "a.shop, c"),
            ["Service/shop/c | spec.hosts | host 'a.shop' is already claimed by Service shop/a (set.yaml:1) | conflicts with Service/shop/a"] },
        { "a second MeshConfig", MeshConfig("one") + MeshConfig("two"),
            ["MeshConfig/meshproxy-system/two | kind | more than one MeshConfig (first at set.yaml:13) | conflicts with MeshConfig/meshproxy-system/one"] },
        // The sidecar has no cross-resource check for AuthorizationPolicy: naming a namespace or principal it
        // has no Service for is normal (callers outside the directory), so neither is refused here.
        { "an AuthorizationPolicy naming namespaces and principals with no Service", AuthorizationPolicy, [] },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Each_cross_resource_error_is_laid_on_the_resource_at_fault(string what, string extra, string[] expected)
    {
        var parsed = ResourceParser.ParseText(Base + extra, "set.yaml");
        Assert.True(parsed.IsValid, $"{what}: {string.Join("\n", parsed.Errors)}");

        var problems = ResourceSetValidator.Validate(parsed.Resources);

        Assert.Equal(expected, problems.Select(p => $"{p.Resource.Key} | {p.Diagnostic.FieldPath} | {p.Diagnostic.Reason}" + (p.ConflictsWith is { } c ? $" | conflicts with {c.Key}" : "")));
        Assert.All(problems, p => Assert.Equal(p.Resource.Source.Line, p.Diagnostic.Line));
        Assert.All(problems, p => Assert.Equal("set.yaml", p.Diagnostic.File));
    }
}
