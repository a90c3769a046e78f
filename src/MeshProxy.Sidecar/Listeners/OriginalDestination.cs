using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// The address a transparently captured connection was really sent to. iptables REDIRECT rewrites the
/// destination to the sidecar's port; the kernel's connection tracking remembers the original, and
/// getsockopt(SO_ORIGINAL_DST) on the accepted socket reads it back.
/// </summary>
internal sealed class OriginalDestinationFeature(IPEndPoint endPoint)
{
    public IPEndPoint EndPoint { get; } = endPoint;
}

internal static class OriginalDestination
{
    // From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>: both are 80.
    private const int SoOriginalDst = 80;
    private const int SolIp = 0;
    private const int SolIpv6 = 41;
    private const ushort AfInet = 2;
    private const ushort AfInet6 = 10;
    private const int SockaddrInLength = 16;
    private const int SockaddrIn6Length = 28;

    /// <summary>
    /// The original destination, or null when the connection was not redirected (no conntrack entry,
    /// or the original destination is this very listener).
    /// </summary>
    public static IPEndPoint? Read(Socket socket)
    {
        if (socket.LocalEndPoint is not IPEndPoint local)
        {
            return null;
        }

        try
        {
            Span<byte> sockaddr = stackalloc byte[SockaddrIn6Length];
            var length = IsIPv4(local)
                ? socket.GetRawSocketOption(SolIp, SoOriginalDst, sockaddr[..SockaddrInLength])
                : socket.GetRawSocketOption(SolIpv6, SoOriginalDst, sockaddr);
            return Decode(sockaddr, length, local);
        }
        catch (SocketException)
        {
            // ENOENT: no NAT entry, i.e. the app dialled the sidecar directly (explicit proxy, Host routing).
            return null;
        }
    }

    /// <summary>
    /// Reads the struct sockaddr_in (IPv4 listener, also one on IPv4-mapped IPv6) or sockaddr_in6 that
    /// getsockopt wrote into <paramref name="sockaddr"/>, <paramref name="length"/> bytes by its account.
    /// Kept apart from the system call so that it can be fuzzed: a short, overlong or foreign-family
    /// answer is "not redirected", never an exception.
    /// </summary>
    internal static IPEndPoint? Decode(ReadOnlySpan<byte> sockaddr, int length, IPEndPoint local)
    {
        var ipv4 = IsIPv4(local);
        // Up to the address; sockaddr_in's padding and sockaddr_in6's scope id are not needed.
        if (length < (ipv4 ? 8 : 24) || length > sockaddr.Length)
        {
            return null;
        }

        // sa_family is in host byte order, the port and the address in network byte order.
        var family = BitConverter.ToUInt16(sockaddr);
        var port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]);
        IPEndPoint original;
        if (ipv4)
        {
            if (family != AfInet)
            {
                return null;
            }

            original = new IPEndPoint(new IPAddress(sockaddr.Slice(4, 4)), port);
            if (local.Address.IsIPv4MappedToIPv6)
            {
                local = new IPEndPoint(local.Address.MapToIPv4(), local.Port);
            }
        }
        else
        {
            if (family != AfInet6)
            {
                return null;
            }

            original = new IPEndPoint(new IPAddress(sockaddr.Slice(8, 16)), port);
        }

        return original.Equals(local) ? null : original;
    }

    private static bool IsIPv4(IPEndPoint local) => local.AddressFamily == AddressFamily.InterNetwork || local.Address.IsIPv4MappedToIPv6;
}
