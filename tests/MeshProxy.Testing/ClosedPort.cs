using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace MeshProxy.Testing;

/// <summary>
/// Loopback ports that refuse connections for the whole test run: each is bound by a socket of this
/// process that never listens, so a connection to it is refused (RST) and no other process can bind it
/// while the tests run. A port found by binding and releasing could be taken by a parallel test and
/// answer; these cannot.
/// </summary>
public static class ClosedPort
{
    // Kept open until the test process exits: the port must stay closed for as long as any fixture names it.
    private static readonly ConcurrentBag<Socket> Held = [];

    /// <summary>A new loopback port nothing listens on, distinct from every other one this returned.</summary>
    public static int Next()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Held.Add(socket);
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
