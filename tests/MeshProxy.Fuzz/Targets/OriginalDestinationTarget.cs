using System.Net;
using System.Net.Sockets;
using MeshProxy.Sidecar.Listeners;

namespace MeshProxy.Fuzz;

/// <summary>
/// Decoding what getsockopt(SO_ORIGINAL_DST) wrote: a sockaddr and the length the kernel reported,
/// for a listener on IPv4, IPv6 or IPv4-mapped IPv6. The first input byte chooses the listener's
/// address and the length; the rest is the buffer. Beyond "no exception": an answer is an endpoint of
/// the family that was asked for, and never the listener itself.
/// </summary>
internal static class OriginalDestinationTarget
{
    private static readonly IPEndPoint[] Listeners =
    [
        new(IPAddress.Parse("10.0.0.1"), 15001),
        new(IPAddress.Parse("::ffff:10.0.0.1"), 15001),
        new(IPAddress.Parse("fd00::1"), 15001),
        new(IPAddress.Loopback, 15006),
    ];

    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty)
        {
            return;
        }

        var local = Listeners[input[0] % Listeners.Length];
        var buffer = input[1..];
        var reported = (input[0] >> 2) switch
        {
            0 => buffer.Length,          // what the kernel wrote, whole
            var n => n % (buffer.Length + 2), // a length that can also exceed the buffer
        };

        var original = OriginalDestination.Decode(buffer, reported, local);
        if (original is null)
        {
            return;
        }

        var ipv4 = local.AddressFamily == AddressFamily.InterNetwork || local.Address.IsIPv4MappedToIPv6;
        FuzzTargets.Check(original.AddressFamily == (ipv4 ? AddressFamily.InterNetwork : AddressFamily.InterNetworkV6), $"{original} for a listener on {local}");
        FuzzTargets.Check(!original.Equals(local) && !(local.Address.IsIPv4MappedToIPv6 && original.Equals(new IPEndPoint(local.Address.MapToIPv4(), local.Port))), $"the listener itself ({original})");
    }
}
