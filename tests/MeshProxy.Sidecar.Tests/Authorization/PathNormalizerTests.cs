using MeshProxy.Authorization;

namespace MeshProxy.Sidecar.Tests.Authorization;

public sealed class PathNormalizerTests
{
    [Theory]
    [InlineData("/", "/")]
    [InlineData("/admin", "/admin")]
    [InlineData("//admin", "/admin")]
    [InlineData("/a//b///c", "/a/b/c")]
    [InlineData("/./admin", "/admin")]
    [InlineData("/a/../admin", "/admin")]
    [InlineData("/../../admin", "/admin")]
    [InlineData("/a/b/..", "/a/")]
    [InlineData("/a/b/.", "/a/b/")]
    [InlineData("/a/..", "/")]
    [InlineData("/%61dmin", "/admin")]
    [InlineData("/%2e%2e/admin", "/admin")]
    [InlineData("/a/%2E./admin", "/admin")]
    [InlineData("/a/.%2e/admin", "/admin")]
    [InlineData("/%7Euser/%5F%2D", "/~user/_-")]
    [InlineData("/a%3fb", "/a%3Fb")]
    [InlineData("/a%25/b", "/a%25/b")]
    [InlineData("/a%252e%252e/b", "/a%252e%252e/b")]
    [InlineData("/admin/", "/admin/")]
    [InlineData("/ADMIN", "/ADMIN")]
    [InlineData("/a/.b/..c/...", "/a/.b/..c/...")]
    public void Normalizes(string input, string expected)
    {
        Assert.True(PathNormalizer.TryNormalize(input, out var normalized, out var rejection), rejection.ToString());
        Assert.Equal(expected, normalized);
        Assert.Equal(PathRejection.None, rejection);

        // Normalizing is idempotent: the app receives a path that normalizes to itself.
        Assert.True(PathNormalizer.TryNormalize(normalized, out var again, out _));
        Assert.Equal(normalized, again);
    }

    [Theory]
    [InlineData("/admin%2F..", "EncodedSlash")]
    [InlineData("/admin%2f", "EncodedSlash")]
    [InlineData("/admin%5C..", "EncodedSlash")]
    [InlineData("\\admin", "NotAbsolute")]
    [InlineData("/a\\admin", "Backslash")]
    [InlineData("/a%00b", "EncodedNull")]
    [InlineData("/a%zz", "InvalidPercentEncoding")]
    [InlineData("/a%4", "InvalidPercentEncoding")]
    [InlineData("/a b", "InvalidCharacter")]
    [InlineData("/a\tb", "InvalidCharacter")]
    [InlineData("/caf\u00e9", "InvalidCharacter")]
    [InlineData("/a?x=1", "InvalidCharacter")]
    [InlineData("/a#frag", "InvalidCharacter")]
    [InlineData("", "NotAbsolute")]
    [InlineData("admin", "NotAbsolute")]
    [InlineData("*", "NotAbsolute")]
    // Path parameters (issue 19): servlet containers map "/admin;x" to "/admin" and "/public/..;/admin/x" to
    // "/admin/x"; other stacks keep ';' as a character. Refused, raw or encoded, wherever they appear.
    [InlineData("/admin;x", "PathParameter")]
    [InlineData("/admin;x/y", "PathParameter")]
    [InlineData("/public/..;/admin/x", "PathParameter")]
    [InlineData("/admin%3Bx", "PathParameter")]
    [InlineData("/admin%3bx", "PathParameter")]
    [InlineData("/a/b;jsessionid=0123", "PathParameter")]
    [InlineData("/;", "PathParameter")]
    public void Refuses(string input, string expected)
    {
        Assert.False(PathNormalizer.TryNormalize(input, out var normalized, out var rejection));
        Assert.Equal(expected, rejection.ToString());
        Assert.Equal(string.Empty, normalized);
    }

    [Fact]
    public void A_clean_path_is_returned_as_is_without_allocating()
    {
        const string path = "/api/v1/charges/42";
        Assert.True(PathNormalizer.TryNormalize(path, out var warm, out _));
        Assert.Same(path, warm);

        Allocations.AssertNone(() => PathNormalizer.TryNormalize(path, out _, out _), calls: 1000);
    }

    [Fact]
    public void A_path_that_only_looked_dirty_is_returned_as_is()
    {
        const string path = "/a%3Fb";
        Assert.True(PathNormalizer.TryNormalize(path, out var normalized, out _));
        Assert.Same(path, normalized);
    }

    [Fact]
    public void Long_paths_use_a_pooled_buffer()
    {
        var segment = new string('a', 300);
        var path = $"/{segment}//{segment}/../{segment}/%62";
        Assert.True(PathNormalizer.TryNormalize(path, out var normalized, out _));
        Assert.Equal($"/{segment}/{segment}/b", normalized);
    }

    [Theory]
    [InlineData("GET", true)]
    [InlineData("POST", true)]
    [InlineData("PROPFIND", true)]
    [InlineData("propfind", true)]
    [InlineData("post", false)]
    [InlineData("Post", false)]
    [InlineData("gEt", false)]
    [InlineData("", false)]
    public void Method_guard_refuses_case_variants_of_standard_methods(string method, bool acceptable) =>
        Assert.Equal(acceptable, MethodGuard.IsAcceptable(method));
}
