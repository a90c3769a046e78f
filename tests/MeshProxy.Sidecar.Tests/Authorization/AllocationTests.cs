using MeshProxy.Authorization;
using static MeshProxy.Sidecar.Tests.Authorization.PolicyFixture;

namespace MeshProxy.Sidecar.Tests.Authorization;

public sealed class AllocationTests
{
    [Fact]
    public void Evaluate_allocates_nothing_per_request()
    {
        // Every kind of matcher, a dry-run and an AUDIT policy, and requests that take each path.
        var engine = Engine(
            Policy("deny-dev", "action: DENY\nrules:\n- from:\n  - source:\n      namespaces: [\"dev\"]\n      notIpBlocks: [\"10.0.0.0/8\"]")
            + Policy("store", """
                rules:
                - from:
                  - source:
                      principals: ["cluster.local/ns/store/*"]
                      ipBlocks: ["10.0.0.0/8", "fd00::/8"]
                  to:
                  - operation:
                      hosts: ["*.svc.cluster.local"]
                      ports: ["8080"]
                      methods: ["POST"]
                      paths: ["/charges", "/charges/*"]
                      notPaths: ["*.json"]
                  when:
                  - key: request.headers[x-tenant]
                    values: ["acme"]
                  - key: source.namespace
                    values: ["store"]
                  - key: connection.sni
                    notValues: ["*.evil"]
                  - key: destination.port
                    values: ["8080"]
                  - key: source.ip
                    notValues: ["10.9.0.0/16"]
                """)
            + Policy("trial", "action: DENY\ndryRun: true\nrules:\n- when:\n  - key: request.headers[x-debug]\n    values: [\"*\"]")
            + Policy("audit", "action: AUDIT\nrules:\n- to:\n  - operation:\n      paths: [\"/charges/*\"]"));
        var headers = Headers(("x-tenant", ["acme"]), ("x-debug", ["1", "2"]));
        AuthorizationRequest[] requests =
        [
            Request(headers: headers, sni: "billing.internal"),
            Request(path: "/charges/1", headers: headers, ip: "::ffff:10.1.1.1"),
            Request(principal: "spiffe://cluster.local/ns/dev/sa/x", ip: "192.168.1.1"),
            Request(principal: null, headers: headers),
            Request(principal: Ops, method: "GET", path: "/x.json", host: "Billing.:8080"),
        ];

        Assert.True(engine.Evaluate(requests[0]).Allowed);
        Assert.False(engine.Evaluate(requests[2]).Allowed);
        Assert.True(engine.Evaluate(requests[0]).WouldDeny);

        var allowed = 0;
        for (var warm = 0; warm < 100; warm++)
        {
            foreach (var request in requests)
            {
                allowed += engine.Evaluate(request).Allowed ? 1 : 0;
            }
        }

        Allocations.AssertNone(
            () =>
            {
                foreach (var request in requests)
                {
                    allowed += engine.Evaluate(request).Allowed ? 1 : 0;
                }
            },
            calls: 10_000);
        Assert.True(allowed > 0);
    }
}
