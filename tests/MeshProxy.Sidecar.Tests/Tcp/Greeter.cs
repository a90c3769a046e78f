using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MeshProxy.Sidecar.Tests.Tcp;

/// <summary>An SMTP-style server on loopback: a banner on accept, "250 ok" per line.</summary>
internal sealed class Greeter : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private int _accepted;

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Accepted => Volatile.Read(ref _accepted);

    public static Greeter Start()
    {
        var greeter = new Greeter();
        greeter._listener.Start();
        _ = greeter.AcceptAsync();
        return greeter;
    }

    public void Dispose() => _listener.Dispose();

    private async Task AcceptAsync()
    {
        while (true)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

            Interlocked.Increment(ref _accepted);
            _ = ServeAsync(client);
        }
    }

    private static async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                await stream.WriteAsync("220 billing ready\r\n"u8.ToArray());
                var reader = new StreamReader(stream, Encoding.ASCII);
                while (await reader.ReadLineAsync() is { } line)
                {
                    await stream.WriteAsync(Encoding.ASCII.GetBytes($"250 ok {line}\r\n"));
                }
            }
            catch (IOException)
            {
                // The client went away.
            }
        }
    }
}
