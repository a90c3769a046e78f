namespace MeshProxy.Identity.Tests;

public sealed class SpiffeIdTests
{
    [Fact]
    public void Workload_id_round_trips()
    {
        var id = SpiffeId.ForWorkload("cluster.local", "default", "web");
        Assert.Equal("spiffe://cluster.local/ns/default/sa/web", id.Value);
        Assert.Equal("cluster.local", id.TrustDomain);
        Assert.Equal("/ns/default/sa/web", id.Path);
        Assert.Equal("default", id.Namespace);
        Assert.Equal("web", id.ServiceAccount);
        Assert.True(id.IsWorkload);
        Assert.Equal(id, SpiffeId.Parse(id.ToString()));
    }

    [Theory]
    [InlineData("spiffe://example.org")]
    [InlineData("spiffe://example.org/other/path")]
    [InlineData("spiffe://td_1-x.y/A.b-c_d")]
    public void Accepts_any_valid_spiffe_id_but_marks_non_workload_paths(string text)
    {
        Assert.True(SpiffeId.TryParse(text, out var id));
        Assert.False(id.IsWorkload);
        Assert.Null(id.Namespace);
    }

    [Theory]
    [InlineData("")]
    [InlineData("https://example.org/ns/a/sa/b")]
    [InlineData("SPIFFE://example.org/ns/a/sa/b")]
    [InlineData("spiffe:/example.org/ns/a/sa/b")]
    [InlineData("spiffe:///ns/a/sa/b")]
    [InlineData("spiffe://Example.org/ns/a/sa/b")]
    [InlineData("spiffe://example.org:8443/ns/a/sa/b")]
    [InlineData("spiffe://user@example.org/ns/a/sa/b")]
    [InlineData("spiffe://exa%6Dple.org/ns/a/sa/b")]
    [InlineData("spiffe://example.org/")]
    [InlineData("spiffe://example.org/ns//sa/b")]
    [InlineData("spiffe://example.org/ns/a/sa/b/")]
    [InlineData("spiffe://example.org/ns/./sa/b")]
    [InlineData("spiffe://example.org/ns/../sa/b")]
    [InlineData("spiffe://example.org/ns/a/sa/b?x=1")]
    [InlineData("spiffe://example.org/ns/a/sa/b#frag")]
    [InlineData("spiffe://example.org/ns/a%2Fb/sa/c")]
    [InlineData("spiffe://example.org/ns/a b/sa/c")]
    public void Refuses_what_the_spec_forbids(string text)
    {
        Assert.False(SpiffeId.TryParse(text, out _, out var error));
        Assert.False(string.IsNullOrWhiteSpace(error));
        Assert.Throws<FormatException>(() => SpiffeId.Parse(text));
    }

    [Fact]
    public void Refuses_overlong_ids_and_trust_domains()
    {
        Assert.False(SpiffeId.TryParse("spiffe://" + new string('a', 256) + "/x", out _));
        Assert.False(SpiffeId.TryParse("spiffe://example.org/" + new string('a', 2040), out _));
    }

    [Fact]
    public void ForWorkload_refuses_bad_parts() =>
        Assert.Throws<FormatException>(() => SpiffeId.ForWorkload("example.org", "a/b", "web"));
}
