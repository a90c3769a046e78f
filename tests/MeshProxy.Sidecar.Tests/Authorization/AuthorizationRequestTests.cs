using static MeshProxy.Sidecar.Tests.Authorization.PolicyFixture;

namespace MeshProxy.Sidecar.Tests.Authorization;

public sealed class AuthorizationRequestTests
{
    [Theory]
    [InlineData("spiffe://cluster.local/ns/store/sa/store", "cluster.local/ns/store/sa/store", "store")]
    [InlineData("cluster.local/ns/store/sa/store", "cluster.local/ns/store/sa/store", "store")]
    [InlineData("spiffe://td/ns//sa/x", "td/ns//sa/x", "")]
    [InlineData("spiffe://td/nsx/store/sa/x", "td/nsx/store/sa/x", "")]
    [InlineData("spiffe://td/ns/store", "td/ns/store", "")]
    [InlineData("spiffe://td/ns/store/x/sa", "td/ns/store/x/sa", "")]
    [InlineData("spiffe:///ns/store/sa/x", "/ns/store/sa/x", "")]
    [InlineData(null, "", "")]
    public void Principal_name_and_namespace_come_from_the_spiffe_id(string? principal, string name, string ns)
    {
        var request = Request(principal: principal);
        Assert.Equal(name, request.PrincipalName.ToString());
        Assert.Equal(ns, request.SourceNamespace.ToString());
    }

    [Theory]
    [InlineData("billing", "billing")]
    [InlineData("billing:8080", "billing")]
    [InlineData("billing.", "billing")]
    [InlineData("Billing.NS.:80", "Billing.NS")]
    [InlineData("[fd00::1]:8080", "[fd00::1]")]
    [InlineData("10.0.0.1:80", "10.0.0.1")]
    public void Host_name_drops_port_and_trailing_dot(string host, string expected) =>
        Assert.Equal(expected, Request(host: host).HostName.ToString());
}
