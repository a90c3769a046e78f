using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MeshProxy.Sidecar.Tests.Infrastructure;

/// <summary>HTTP/1.1 written by hand on a socket, for what HttpClient will not send: malformed requests, 100-continue, pipelined keep-alive.</summary>
internal sealed class RawHttp : IAsyncDisposable
{
    private readonly TcpClient _client;
    private readonly NetworkStream _stream;

    private RawHttp(TcpClient client)
    {
        _client = client;
        _stream = client.GetStream();
        _stream.ReadTimeout = 10_000;
    }

    public static async Task<RawHttp> ConnectAsync(IPEndPoint endPoint)
    {
        var client = new TcpClient();
        await client.ConnectAsync(endPoint);
        return new RawHttp(client);
    }

    public Task SendAsync(string text) => _stream.WriteAsync(Encoding.ASCII.GetBytes(text)).AsTask();

    public Task SendAsync(byte[] bytes) => _stream.WriteAsync(bytes).AsTask();

    /// <summary>Reads until <paramref name="until"/> appears or the peer closes; returns what was read.</summary>
    public async Task<string> ReadUntilAsync(string until, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        var received = new StringBuilder();
        var buffer = new byte[8192];
        while (!received.ToString().Contains(until, StringComparison.Ordinal))
        {
            int n;
            try
            {
                n = await _stream.ReadAsync(buffer, cts.Token);
            }
            catch (IOException)
            {
                break;
            }

            if (n == 0)
            {
                break;
            }

            received.Append(Encoding.ASCII.GetString(buffer, 0, n));
        }

        return received.ToString();
    }

    public ValueTask DisposeAsync()
    {
        _client.Dispose();
        return ValueTask.CompletedTask;
    }
}
