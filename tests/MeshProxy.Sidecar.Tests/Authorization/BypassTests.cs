using MeshProxy.Authorization;
using MeshProxy.Config.Resources;
using static MeshProxy.Sidecar.Tests.Authorization.PolicyFixture;

namespace MeshProxy.Sidecar.Tests.Authorization;

/// <summary>
/// Requests crafted to reach /admin past a DENY on it, run through the same steps the inbound
/// pipeline takes: method guard, path normalization (400 on refusal), then the engine on the
/// normalized path, which is also what the application receives.
/// </summary>
public sealed class BypassTests
{
    private static readonly AuthorizationEngine DenyAdmin = Engine(Policy("deny-admin", """
        action: DENY
        rules:
        - to:
          - operation:
              paths: ["/admin", "/admin/*"]
        - to:
          - operation:
              methods: ["POST"]
              paths: ["/reports", "/reports/*"]
        """));

    private static string Outcome(AuthorizationEngine engine, string method, string rawPath, params (string Name, string[] Values)[] headers)
    {
        if (!MethodGuard.IsAcceptable(method))
        {
            return "400 method";
        }

        if (!PathNormalizer.TryNormalize(rawPath, PathNormalizationSpec.Default, out var path, out var rejection))
        {
            return $"400 {rejection}";
        }

        var decision = engine.Evaluate(Request(method: method, path: path, headers: headers.Length == 0 ? null : Headers(headers)));
        return decision.Allowed ? $"allow {path}" : $"deny {path}";
    }

    [Theory]
    [InlineData("/admin", "deny /admin")]
    [InlineData("//admin", "deny /admin")]
    [InlineData("/./admin", "deny /admin")]
    [InlineData("/a/../admin", "deny /admin")]
    [InlineData("/%61dmin", "deny /admin")]
    [InlineData("/%2e%2e/admin", "deny /admin")]
    [InlineData("/%2E%2E/%2e/admin/users", "deny /admin/users")]
    [InlineData("/admin/", "deny /admin/")]
    [InlineData("/admin//", "deny /admin/")]
    [InlineData("/admin/x/../../admin", "deny /admin")]
    [InlineData("/admin%2F..", "400 EncodedSlash")]
    [InlineData("/public%2F..%2Fadmin", "400 EncodedSlash")]
    [InlineData("\\admin", "400 NotAbsolute")]
    [InlineData("/\\admin", "400 Backslash")]
    [InlineData("/%5Cadmin", "400 EncodedSlash")]
    [InlineData("/admin%00.html", "400 EncodedNull")]
    // Paths are case-sensitive (RFC 3986): /ADMIN is another resource and this policy does not name it.
    [InlineData("/ADMIN", "allow /ADMIN")]
    [InlineData("/adminx", "allow /adminx")]
    public void Path_spellings_of_admin(string rawPath, string expected) =>
        Assert.Equal(expected, Outcome(DenyAdmin, "GET", rawPath));

    [Theory]
    [InlineData("POST", "deny /reports")]
    [InlineData("post", "400 method")]
    [InlineData("Post", "400 method")]
    [InlineData("GET", "allow /reports")]
    public void Method_spellings_of_post(string method, string expected) =>
        Assert.Equal(expected, Outcome(DenyAdmin, method, "/reports"));

    [Fact]
    public void An_exact_path_alone_does_not_cover_a_trailing_slash_which_is_why_the_parser_warns()
    {
        var exactOnly = Engine(Policy("deny-exact", "action: DENY\nrules:\n- to:\n  - operation:\n      paths: [\"/admin\"]"));
        Assert.Equal("deny /admin", Outcome(exactOnly, "GET", "/admin"));
        Assert.Equal("allow /admin/", Outcome(exactOnly, "GET", "/admin/"));
    }

    [Fact]
    public void A_header_sent_twice_cannot_escape_a_deny()
    {
        var engine = Engine(Policy("deny-guests", """
            action: DENY
            rules:
            - when:
              - key: request.headers[x-role]
                values: ["guest"]
            - when:
              - key: request.headers[x-env]
                notValues: ["prod"]
            """));
        Assert.Equal("deny /", Outcome(engine, "GET", "/", ("x-role", ["guest"]), ("x-env", ["prod"])));
        Assert.Equal("deny /", Outcome(engine, "GET", "/", ("x-role", ["admin", "guest"]), ("x-env", ["prod"])));
        Assert.Equal("deny /", Outcome(engine, "GET", "/", ("x-role", ["guest", "admin"]), ("x-env", ["prod"])));
        Assert.Equal("allow /", Outcome(engine, "GET", "/", ("x-role", ["admin"]), ("x-env", ["prod"])));
        Assert.Equal("deny /", Outcome(engine, "GET", "/", ("x-env", ["prod", "dev"])));
        Assert.Equal("deny /", Outcome(engine, "GET", "/"));
    }

    [Fact]
    public void A_header_sent_twice_cannot_satisfy_an_allow_with_one_good_copy()
    {
        var engine = Engine(Policy("admins", """
            rules:
            - when:
              - key: request.headers[x-role]
                values: ["admin"]
              - key: request.headers[x-env]
                notValues: ["dev"]
            """));
        Assert.Equal("allow /", Outcome(engine, "GET", "/", ("x-role", ["admin"])));
        Assert.Equal("allow /", Outcome(engine, "GET", "/", ("x-role", ["admin", "admin"]), ("x-env", ["prod"])));
        Assert.Equal("deny /", Outcome(engine, "GET", "/", ("x-role", ["guest", "admin"])));
        Assert.Equal("deny /", Outcome(engine, "GET", "/", ("x-role", ["admin", "guest"])));
        Assert.Equal("deny /", Outcome(engine, "GET", "/", ("x-role", ["admin"]), ("x-env", ["prod", "dev"])));
        Assert.Equal("deny /", Outcome(engine, "GET", "/"));
    }

    [Fact]
    public void Host_spelling_cannot_escape_a_deny()
    {
        var engine = Engine(Policy("deny-internal", "action: DENY\nrules:\n- to:\n  - operation:\n      hosts: [\"internal.billing\"]"));
        foreach (var host in new[] { "internal.billing", "INTERNAL.Billing", "internal.billing.", "internal.billing:8080", "Internal.Billing.:80" })
        {
            Assert.False(engine.Evaluate(Request(host: host)).Allowed, host);
        }

        Assert.True(engine.Evaluate(Request(host: "billing")).Allowed);
    }
}
