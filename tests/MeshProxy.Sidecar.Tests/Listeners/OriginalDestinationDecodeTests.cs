using System.Buffers.Binary;
using System.Net;
using MeshProxy.Sidecar.Listeners;

namespace MeshProxy.Sidecar.Tests.Listeners;

/// <summary>Decoding getsockopt(SO_ORIGINAL_DST)'s answer (the system call itself is exercised by the capture tests in network namespaces).</summary>
public sealed class OriginalDestinationDecodeTests
{
    private static readonly IPEndPoint Listener = new(IPAddress.Parse("10.0.0.1"), 15001);

    [Fact]
    public void A_sockaddr_in_is_the_original_destination()
    {
        var sockaddr = SockaddrIn(family: 2, "10.96.0.10", 8080);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.96.0.10"), 8080), OriginalDestination.Decode(sockaddr, sockaddr.Length, Listener));

        // A listener on IPv4-mapped IPv6 reads the same IPv4 structure.
        var mapped = new IPEndPoint(IPAddress.Parse("::ffff:10.0.0.1"), 15001);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.96.0.10"), 8080), OriginalDestination.Decode(sockaddr, sockaddr.Length, mapped));
    }

    [Fact]
    public void A_sockaddr_in6_is_the_original_destination()
    {
        var sockaddr = new byte[28];
        BitConverter.TryWriteBytes(sockaddr, (ushort)10);
        BinaryPrimitives.WriteUInt16BigEndian(sockaddr.AsSpan(2), 9090);
        IPAddress.Parse("fd00::a").TryWriteBytes(sockaddr.AsSpan(8), out _);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("fd00::a"), 9090), OriginalDestination.Decode(sockaddr, 28, new IPEndPoint(IPAddress.Parse("fd00::1"), 15001)));
    }

    [Theory]
    [InlineData(7)]  // shorter than family, port and address
    [InlineData(17)] // longer than the buffer: a length that cannot be believed
    public void A_length_that_does_not_fit_is_not_redirected(int length)
    {
        Assert.Null(OriginalDestination.Decode(SockaddrIn(2, "10.96.0.10", 8080), length, Listener));
    }

    [Fact]
    public void Another_family_or_the_listener_itself_is_not_redirected()
    {
        var sockaddr = SockaddrIn(family: 10, "10.96.0.10", 8080);
        Assert.Null(OriginalDestination.Decode(sockaddr, sockaddr.Length, Listener));
        var self = SockaddrIn(family: 2, "10.0.0.1", 15001);
        Assert.Null(OriginalDestination.Decode(self, self.Length, Listener));
    }

    private static byte[] SockaddrIn(ushort family, string address, ushort port)
    {
        var sockaddr = new byte[16];
        BitConverter.TryWriteBytes(sockaddr, family);
        BinaryPrimitives.WriteUInt16BigEndian(sockaddr.AsSpan(2), port);
        IPAddress.Parse(address).TryWriteBytes(sockaddr.AsSpan(4), out _);
        return sockaddr;
    }
}
