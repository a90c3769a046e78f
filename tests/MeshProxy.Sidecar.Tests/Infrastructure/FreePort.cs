using System.Net;
using System.Net.Sockets;

namespace MeshProxy.Sidecar.Tests.Infrastructure;

internal static class FreePort
{
    /// <summary>A loopback port nothing listens on (the kernel's pick, released at once): connecting to it is refused.</summary>
    public static int Get()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
