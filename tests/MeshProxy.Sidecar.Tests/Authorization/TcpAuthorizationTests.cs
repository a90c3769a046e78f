using System.Net;
using MeshProxy.Authorization;
using static MeshProxy.Sidecar.Tests.Authorization.PolicyFixture;

namespace MeshProxy.Sidecar.Tests.Authorization;

/// <summary>
/// Istio's rule for a policy applied to a TCP connection (src/MeshProxy.Authorization/TcpRules.cs): an ALLOW rule that
/// uses an HTTP-only field never matches a connection; a DENY rule is read without its HTTP-only fields, so it denies
/// more. Each row says what the same policy decides for an HTTP request and for a TCP connection.
/// </summary>
public sealed class TcpAuthorizationTests
{
    private static AuthorizationRequest Tcp(string? principal = Store, int port = 5432, string ip = "10.1.2.3") =>
        AuthorizationRequest.ForConnection(principal, IPAddress.Parse(ip), port, sni: null);

    private static string Explain(AuthorizationEngine engine, AuthorizationRequest request) => engine.Evaluate(request).Explain();

    [Fact]
    public void Principals_namespaces_and_ports_decide_a_connection_as_they_decide_a_request()
    {
        var engine = Engine(Policy("db-clients", """
            rules:
            - from: [{ source: { principals: ["cluster.local/ns/store/sa/store"] } }]
              to: [{ operation: { ports: ["5432"] } }]
            - from: [{ source: { namespaces: ["ops"] } }]
            """));
        Assert.Equal("allowed by ALLOW policy billing/db-clients rule 0", Explain(engine, Tcp()));
        Assert.Equal("denied: no ALLOW policy matched (1 apply)", Explain(engine, Tcp(port: 6379)));
        Assert.Equal("allowed by ALLOW policy billing/db-clients rule 1", Explain(engine, Tcp(Ops, port: 6379)));
        Assert.Equal("denied: no ALLOW policy matched (1 apply)", Explain(engine, Tcp(principal: null)));
    }

    [Fact]
    public void An_allow_rule_with_an_http_only_field_never_matches_a_connection()
    {
        foreach (var httpOnly in new[]
        {
            "to: [{ operation: { ports: [\"5432\"], methods: [\"GET\"] } }]",
            "to: [{ operation: { ports: [\"5432\"], paths: [\"/*\"] } }]",
            "to: [{ operation: { ports: [\"5432\"], notHosts: [\"x\"] } }]",
            "from: [{ source: { requestPrincipals: [\"*\"] } }]",
            "when: [{ key: \"request.headers[x-debug]\", values: [\"1\"] }]",
        })
        {
            var engine = Engine(Policy("mixed", $"""
                rules:
                - {httpOnly}
                - from: [{"{"} source: {"{"} namespaces: ["ops"] {"}"} {"}"}]
                """));

            // The rule still works for HTTP requests; a connection is judged by the other rule alone.
            Assert.Equal("denied: no ALLOW policy matched (1 apply)", Explain(engine, Tcp()));
            Assert.Equal("allowed by ALLOW policy billing/mixed rule 1", Explain(engine, Tcp(Ops)));
        }

        var http = Engine(Policy("mixed", """
            rules:
            - to: [{ operation: { ports: ["5432"], methods: ["GET"] } }]
            """));
        Assert.Equal("allowed by ALLOW policy billing/mixed rule 0", Explain(http, Request(method: "GET", port: 5432)));
    }

    [Fact]
    public void A_deny_rule_is_read_without_its_http_only_fields_so_it_denies_every_connection_its_other_fields_match()
    {
        var engine = Engine(Policy("no-get-on-db", """
            action: DENY
            rules:
            - to: [{ operation: { ports: ["5432"], methods: ["GET"], paths: ["/admin"] } }]
              when: [{ key: "request.auth.claims[iss]", values: ["x"] }, { key: "source.ip", values: ["10.1.0.0/16"] }]
            """));

        // HTTP: only a GET /admin with the claim is denied.
        Assert.Equal("allowed: no ALLOW policy applies", Explain(engine, Request(method: "POST", port: 5432)));

        // TCP: methods, paths and the claim are dropped; port and source.ip remain.
        Assert.Equal("denied by DENY policy billing/no-get-on-db rule 0", Explain(engine, Tcp()));
        Assert.Equal("allowed: no ALLOW policy applies", Explain(engine, Tcp(port: 6379)));
        Assert.Equal("allowed: no ALLOW policy applies", Explain(engine, Tcp(ip: "10.2.0.1")));

        // A DENY rule of HTTP-only fields alone matches every connection.
        var onlyHttp = Engine(Policy("no-deletes", """
            action: DENY
            rules:
            - from: [{ source: { requestPrincipals: ["*"] } }]
              to: [{ operation: { methods: ["DELETE"] } }]
            """));
        Assert.Equal("denied by DENY policy billing/no-deletes rule 0", Explain(onlyHttp, Tcp(Ops, port: 1)));
        Assert.Equal("allowed: no ALLOW policy applies", Explain(onlyHttp, Request(method: "GET")));
    }
}
