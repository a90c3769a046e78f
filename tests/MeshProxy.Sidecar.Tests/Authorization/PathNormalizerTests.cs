using MeshProxy.Authorization;
using MeshProxy.Config.Resources;

namespace MeshProxy.Sidecar.Tests.Authorization;

public sealed class PathNormalizerTests
{
    private static readonly PathNormalizationSpec Default = PathNormalizationSpec.Default;

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
        Assert.True(PathNormalizer.TryNormalize(input, Default, out var normalized, out var rejection), rejection.ToString());
        Assert.Equal(expected, normalized);
        Assert.Equal(PathRejection.None, rejection);

        // Normalizing is idempotent: the app receives a path that normalizes to itself.
        Assert.True(PathNormalizer.TryNormalize(normalized, Default, out var again, out _));
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
        Assert.False(PathNormalizer.TryNormalize(input, Default, out var normalized, out var rejection));
        Assert.Equal(expected, rejection.ToString());
        Assert.Equal(string.Empty, normalized);
    }

    [Fact]
    public void A_clean_path_is_returned_as_is_without_allocating()
    {
        const string path = "/api/v1/charges/42";
        Assert.True(PathNormalizer.TryNormalize(path, Default, out var warm, out _));
        Assert.Same(path, warm);

        Allocations.AssertNone(() => PathNormalizer.TryNormalize(path, Default, out _, out _), calls: 1000);
    }

    [Fact]
    public void A_path_that_only_looked_dirty_is_returned_as_is()
    {
        const string path = "/a%3Fb";
        Assert.True(PathNormalizer.TryNormalize(path, Default, out var normalized, out _));
        Assert.Same(path, normalized);
    }

    [Fact]
    public void Long_paths_use_a_pooled_buffer()
    {
        var segment = new string('a', 300);
        var path = $"/{segment}//{segment}/../{segment}/%62";
        Assert.True(PathNormalizer.TryNormalize(path, Default, out var normalized, out _));
        Assert.Equal($"/{segment}/{segment}/b", normalized);
    }

    /// <summary>MeshConfig pathNormalization: Istio's examples for each mode, and the path-parameter choices.</summary>
    [Theory]
    // NONE: nothing changes; only what cannot be a path at all is refused.
    [InlineData("NONE", "REJECT", "/a/../b", "/a/../b")]
    [InlineData("NONE", "REJECT", "/%61dmin//x/./", "/%61dmin//x/./")]
    [InlineData("NONE", "REJECT", "/a\\b%2fc%5c", "/a\\b%2fc%5c")]
    [InlineData("NONE", "REJECT", "/a;b", "400 PathParameter")]
    [InlineData("NONE", "REJECT", "/a%00", "400 EncodedNull")]
    [InlineData("NONE", "REJECT", "/a%g0", "400 InvalidPercentEncoding")]
    [InlineData("NONE", "KEEP", "/a;b/%3bc", "/a;b/%3bc")]
    [InlineData("NONE", "STRIP", "/public/..;/admin", "/public/../admin")]
    // BASE: RFC 3986 plus '\' read as '/'; empty segments kept, %2F kept (uppercased).
    [InlineData("BASE", "REJECT", "/a/../b", "/b")]
    [InlineData("BASE", "REJECT", "/\\da", "//da")]
    [InlineData("BASE", "REJECT", "/a\\..\\b", "/b")]
    [InlineData("BASE", "REJECT", "/a//b", "/a//b")]
    [InlineData("BASE", "REJECT", "//a/./b/", "//a/b/")]
    [InlineData("BASE", "REJECT", "/a//../b", "/a/b")]
    [InlineData("BASE", "REJECT", "/a/%2fb/%41", "/a/%2Fb/A")]
    [InlineData("BASE", "REJECT", "/a//", "/a//")]
    // MERGE_SLASHES: BASE, then slashes merged.
    [InlineData("MERGE_SLASHES", "REJECT", "/a//b", "/a/b")]
    [InlineData("MERGE_SLASHES", "REJECT", "/a\\\\b", "/a/b")]
    [InlineData("MERGE_SLASHES", "REJECT", "/a%2f%2fb", "/a%2F%2Fb")]
    // DECODE_AND_MERGE_SLASHES: %2F and %5C decoded first.
    [InlineData("DECODE_AND_MERGE_SLASHES", "REJECT", "/a%2fb", "/a/b")]
    [InlineData("DECODE_AND_MERGE_SLASHES", "REJECT", "/a%5Cb", "/a/b")]
    [InlineData("DECODE_AND_MERGE_SLASHES", "REJECT", "/public%2F..%2F%2Fadmin", "/admin")]
    [InlineData("DECODE_AND_MERGE_SLASHES", "REJECT", "/a%252Fb", "/a%252Fb")]
    [InlineData("DECODE_AND_MERGE_SLASHES", "REJECT", "/a%3Bb", "400 PathParameter")]
    // STRICT (the default): MERGE_SLASHES with '\', %2F and %5C refused.
    [InlineData("STRICT", "REJECT", "/a%2fb", "400 EncodedSlash")]
    [InlineData("STRICT", "REJECT", "/a\\b", "400 Backslash")]
    [InlineData("STRICT", "REJECT", "/a//./b", "/a/b")]
    // Path parameters: STRIP cuts each segment at ';' before the rest, as servlet containers do.
    [InlineData("STRICT", "STRIP", "/admin;x", "/admin")]
    [InlineData("STRICT", "STRIP", "/admin;x/y", "/admin/y")]
    [InlineData("STRICT", "STRIP", "/public/..;/admin/x", "/admin/x")]
    [InlineData("STRICT", "STRIP", "/a;b;c/d;e=1/", "/a/d/")]
    [InlineData("STRICT", "STRIP", "/;x/a", "/a")]
    [InlineData("BASE", "STRIP", "/;x/a", "//a")]
    [InlineData("STRICT", "STRIP", "/admin%3Bx", "400 PathParameter")]
    [InlineData("STRICT", "STRIP", "/a;%zz", "400 InvalidPercentEncoding")]
    [InlineData("STRICT", "KEEP", "/admin;x/../y", "/y")]
    [InlineData("STRICT", "KEEP", "/admin%3bx", "/admin%3Bx")]
    public void Each_mode_normalizes_as_documented(string normalization, string parameters, string input, string expected)
    {
        var options = Options(normalization, parameters);
        var accepted = PathNormalizer.TryNormalize(input, options, out var normalized, out var rejection);
        Assert.Equal(expected, accepted ? normalized : $"400 {rejection}");
        if (accepted)
        {
            // Every mode is idempotent: the app receives a path that normalizes to itself.
            Assert.True(PathNormalizer.TryNormalize(normalized, options, out var again, out _));
            Assert.Equal(normalized, again);
        }
    }

    [Theory]
    [InlineData("NONE", "REJECT")]
    [InlineData("BASE", "KEEP")]
    [InlineData("MERGE_SLASHES", "STRIP")]
    [InlineData("DECODE_AND_MERGE_SLASHES", "REJECT")]
    public void A_clean_path_costs_nothing_in_any_mode(string normalization, string parameters)
    {
        var options = Options(normalization, parameters);
        const string path = "/api/v1/charges/42";
        Assert.True(PathNormalizer.TryNormalize(path, options, out var same, out _));
        Assert.Same(path, same);
        Allocations.AssertNone(() => PathNormalizer.TryNormalize(path, options, out _, out _), calls: 1000);
    }

    private static PathNormalizationSpec Options(string normalization, string parameters) => new(
        normalization switch
        {
            "NONE" => PathNormalization.None,
            "BASE" => PathNormalization.Base,
            "MERGE_SLASHES" => PathNormalization.MergeSlashes,
            "DECODE_AND_MERGE_SLASHES" => PathNormalization.DecodeAndMergeSlashes,
            _ => PathNormalization.Strict,
        },
        parameters switch
        {
            "STRIP" => PathParameterHandling.Strip,
            "KEEP" => PathParameterHandling.Keep,
            _ => PathParameterHandling.Reject,
        });

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
