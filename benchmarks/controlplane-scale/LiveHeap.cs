using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Google.Protobuf;
using MeshProxy.Api.V1;
using MeshProxy.ControlPlane.Hosting;
using Microsoft.Extensions.Logging;

/// <summary>
/// Where the control plane's memory per sidecar goes, as live objects after a full collection: the control plane
/// runs in this process, the "sidecars" are raw sockets speaking just enough HTTP/2 (preface, SETTINGS, HEADERS,
/// one DATA frame with the Node) and draining what they get, so the client side costs about one socket each.
/// Three measurements separate the layers: plain TCP socket pairs, bare HTTP/2 connections (no stream), and
/// connections each with its StreamSnapshots stream.
/// </summary>
internal static class LiveHeap
{
    private static readonly byte[] Discard = new byte[64 * 1024];

    public static async Task RunAsync(int sidecars, int services, Func<int, int, string> serviceYaml)
    {
        var dir = Directory.CreateTempSubdirectory("meshproxy-cp-liveheap").FullName;
        try
        {
            for (var i = 0; i < services; i++)
            {
                File.WriteAllText(Path.Combine(dir, $"svc-{i:D2}.yaml"), serviceYaml(i, 9000 + i));
            }

            Console.WriteLine($"live managed heap per connection, {sidecars} connections, {services} services + routes (full GC before and after):");
            Console.WriteLine($"  TCP socket pair, both ends draining (the harness's own cost):  {await TcpPairsAsync(sidecars):F1} KiB");
            foreach (var withStream in new[] { false, true })
            {
                await using var host = await ControlPlaneHost.StartAsync(
                    new ControlPlaneOptions { ConfigDirectory = dir, GrpcEndPoint = new(IPAddress.Loopback, 0), MonitoringEndPoint = new(IPAddress.Loopback, 0) },
                    logging => logging.AddFilter(_ => false));
                var (total, pinned) = await ConnectionsAsync(host, sidecars, withStream);
                Console.WriteLine(withStream
                    ? $"  HTTP/2 connection + StreamSnapshots stream, snapshot pushed:     {total:F1} KiB (pinned pool blocks {pinned:F1} KiB)"
                    : $"  bare Kestrel HTTP/2 connection (preface + SETTINGS, no stream): {total:F1} KiB (pinned pool blocks {pinned:F1} KiB)");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (long Total, long Pinned) Live()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var pinned = GC.GetGCMemoryInfo(GCKind.FullBlocking).GenerationInfo[4].SizeAfterBytes; // the pinned object heap
        return (GC.GetTotalMemory(forceFullCollection: true), pinned);
    }

    private static async Task<double> TcpPairsAsync(int count)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start(count);
        var accepted = new List<Socket>();
        using var stop = new CancellationTokenSource();
        var accept = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var socket = await listener.AcceptSocketAsync(stop.Token);
                accepted.Add(socket);
                _ = DrainAsync(socket);
            }
        });
        var before = Live();
        var clients = new List<Socket>();
        for (var i = 0; i < count; i++)
        {
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            _ = DrainAsync(client);
            clients.Add(client);
        }

        await Task.Delay(2000);
        var after = Live();
        await stop.CancelAsync();
        foreach (var s in clients.Concat(accepted))
        {
            s.Dispose();
        }

        await accept.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        return (after.Total - before.Total) / 1024.0 / count;
    }

    private static async Task<(double Total, double Pinned)> ConnectionsAsync(ControlPlaneHost host, int count, bool withStream)
    {
        var port = host.GrpcEndPoint.Port;
        // A few first, so that one-time costs (JIT, pools, the snapshot cache) are not charged to the measured ones.
        var sockets = new List<Socket>();
        for (var i = 0; i < 20; i++)
        {
            sockets.Add(await OpenAsync(port, i, withStream));
        }

        await WaitForStreamsAsync(host, withStream ? 20 : 0);
        await Task.Delay(1000);
        var before = Live();
        for (var i = 0; i < count; i++)
        {
            sockets.Add(await OpenAsync(port, 20 + i, withStream));
            if (i % 100 == 99)
            {
                await Task.Delay(20);
            }
        }

        await WaitForStreamsAsync(host, withStream ? 20 + count : 0);
        await Task.Delay(3000);
        var after = Live();
        foreach (var s in sockets)
        {
            s.Dispose();
        }

        return ((after.Total - before.Total) / 1024.0 / count, (after.Pinned - before.Pinned) / 1024.0 / count);
    }

    private static async Task WaitForStreamsAsync(ControlPlaneHost host, int count)
    {
        for (var i = 0; i < 1200 && host.Registry.Count < count; i++)
        {
            await Task.Delay(50);
        }

        if (host.Registry.Count < count)
        {
            throw new TimeoutException($"only {host.Registry.Count} of {count} streams registered");
        }
    }

    private static async Task<Socket> OpenAsync(int port, int id, bool withStream)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, port);
        var output = new MemoryStream();
        output.Write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8);
        Frame(output, type: 4, flags: 0, stream: 0, []);
        Frame(output, type: 4, flags: 1, stream: 0, []); // ACK of the server's SETTINGS, which always comes first
        if (withStream)
        {
            var headers = new MemoryStream();
            foreach (var (name, value) in new[]
            {
                (":method", "POST"), (":scheme", "http"), (":path", "/meshproxy.v1.ConfigDiscovery/StreamSnapshots"), (":authority", $"127.0.0.1:{port}"),
                ("content-type", "application/grpc"), ("te", "trailers"),
            })
            {
                // HPACK literal without indexing, new name, no Huffman (RFC 7541 6.2.2).
                headers.WriteByte(0);
                headers.WriteByte((byte)name.Length);
                headers.Write(Encoding.ASCII.GetBytes(name));
                headers.WriteByte((byte)value.Length);
                headers.Write(Encoding.ASCII.GetBytes(value));
            }

            Frame(output, type: 1, flags: 0x4, stream: 1, headers.ToArray());
            var node = new Node { Workload = $"wl-{id % 100:D3}", Namespace = "bench", ServiceAccount = $"wl-{id % 100:D3}", InstanceId = $"sc-{id:D4}" };
            var request = new SnapshotRequest { Node = node }.ToByteArray();
            var message = new byte[5 + request.Length];
            BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(1), (uint)request.Length);
            request.CopyTo(message, 5);
            Frame(output, type: 0, flags: 0, stream: 1, message);
        }

        await socket.SendAsync(output.ToArray());
        _ = DrainAsync(socket);
        return socket;
    }

    private static async Task DrainAsync(Socket socket)
    {
        try
        {
            while (await socket.ReceiveAsync(Discard) > 0)
            {
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
    }

    private static void Frame(Stream output, byte type, byte flags, int stream, byte[] payload)
    {
        Span<byte> header = stackalloc byte[9];
        header[0] = (byte)(payload.Length >> 16);
        header[1] = (byte)(payload.Length >> 8);
        header[2] = (byte)payload.Length;
        header[3] = type;
        header[4] = flags;
        BinaryPrimitives.WriteInt32BigEndian(header[5..], stream);
        output.Write(header);
        output.Write(payload);
    }
}
