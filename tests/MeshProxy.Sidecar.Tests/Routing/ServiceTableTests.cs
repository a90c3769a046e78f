using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Tests.Routing;

public sealed class ServiceTableTests
{
    [Theory]
    [InlineData("billing", "billing", null)]
    [InlineData("billing:8080", "billing", 8080)]
    [InlineData("billing.shop.svc.cluster.local.", "billing.shop.svc.cluster.local", null)]
    [InlineData("[::1]:9000", "::1", 9000)]
    [InlineData("[fe80::1]", "fe80::1", null)]
    [InlineData("10.0.0.1:80", "10.0.0.1", 80)]
    public void Authorities_split_into_host_and_port(string authority, string host, int? port)
    {
        Assert.True(ServiceTable.TrySplitAuthority(authority, out var h, out var p));
        Assert.Equal(host, h.ToString());
        Assert.Equal(port, p);
    }

    [Theory]
    [InlineData("")]
    [InlineData("billing:")]
    [InlineData("billing:99999")]
    [InlineData("billing:8o")]
    [InlineData("[::1")]
    [InlineData(":80")]
    public void Malformed_authorities_are_refused(string authority) =>
        Assert.False(ServiceTable.TrySplitAuthority(authority, out _, out _));
}
