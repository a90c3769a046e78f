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
            IPEndPoint original;
            if (local.AddressFamily == AddressFamily.InterNetwork || local.Address.IsIPv4MappedToIPv6)
            {
                Span<byte> sockaddr = stackalloc byte[16]; // struct sockaddr_in
                if (socket.GetRawSocketOption(SolIp, SoOriginalDst, sockaddr) < 8)
                {
                    return null;
                }

                original = new IPEndPoint(new IPAddress(sockaddr.Slice(4, 4)), BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]));
                if (local.Address.IsIPv4MappedToIPv6)
                {
                    local = new IPEndPoint(local.Address.MapToIPv4(), local.Port);
                }
            }
            else
            {
                Span<byte> sockaddr = stackalloc byte[28]; // struct sockaddr_in6
                if (socket.GetRawSocketOption(SolIpv6, SoOriginalDst, sockaddr) < 24)
                {
                    return null;
                }

                original = new IPEndPoint(new IPAddress(sockaddr.Slice(8, 16)), BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]));
            }

            return original.Equals(local) ? null : original;
        }
        catch (SocketException)
        {
            // ENOENT: no NAT entry, i.e. the app dialled the sidecar directly (explicit proxy, Host routing).
            return null;
        }
    }
}
