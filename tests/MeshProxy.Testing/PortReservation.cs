using System.Net;
using System.Net.Sockets;

namespace MeshProxy.Testing;

/// <summary>
/// A loopback port held for a child process that cannot listen on port 0 and report what it bound (nginx
/// rejects port 0). The reserving socket is bound with SO_REUSEPORT and never listens: no other process
/// can bind the port (unless it too sets SO_REUSEPORT, as the same user), the child can because its listen
/// directive sets SO_REUSEPORT as well (nginx: <c>listen ... reuseport</c>), and the reservation is dropped
/// once the child is serving. Children that can bind port 0 should do that instead (see README.md).
/// </summary>
public sealed class PortReservation : IDisposable
{
    private const int SolSocket = 1;
    private const int SoReusePort = 15;
    private readonly Socket _socket;

    public PortReservation()
    {
        _socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _socket.SetRawSocketOption(SolSocket, SoReusePort, BitConverter.GetBytes(1));
        _socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Port = ((IPEndPoint)_socket.LocalEndPoint!).Port;
    }

    public int Port { get; }

    public void Dispose() => _socket.Dispose();
}
