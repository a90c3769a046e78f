using System.Net;
using System.Net.Sockets;

namespace MeshProxy.Testing;

/// <summary>
/// A loopback port held for a server that must be told its port before it starts (nginx rejects port 0; a
/// pod's proxy.meshproxy.io/config names its listener ports; a CA that is away at first). The reserving socket
/// is bound with SO_REUSEADDR and SO_REUSEPORT and never listens. Linux lets another socket bind the same port
/// only if it sets SO_REUSEADDR too while no socket there listens (Kestrel's and nginx's listeners do), or
/// SO_REUSEPORT as the same user (nginx <c>listen ... reuseport</c>); a bind to port 0 never picks a port that is
/// bound. So the server binds and listens while the reservation is held, and nothing else gets the port in
/// between. Servers that can bind port 0 and say what they bound should do that instead (see README.md).
/// </summary>
public sealed class PortReservation : IDisposable
{
    private const int SolSocket = 1;
    private const int SoReuseAddr = 2;
    private const int SoReusePort = 15;
    private readonly Socket _socket;

    public PortReservation()
    {
        _socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
        _socket.SetRawSocketOption(SolSocket, SoReusePort, BitConverter.GetBytes(1));
        _socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Port = ((IPEndPoint)_socket.LocalEndPoint!).Port;
    }

    public int Port { get; }

    public void Dispose() => _socket.Dispose();
}
