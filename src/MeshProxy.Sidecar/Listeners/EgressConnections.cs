using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshProxy.Metrics.Istio;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Egress;
using MeshProxy.Sidecar.Runtime;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// The outbound listener's connection-level egress, before any HTTP parsing: a transparently captured
/// connection that opens with a TLS ClientHello is decided on its SNI and original port and passed
/// through untouched; a connection whose first request is HTTP CONNECT (the app using the sidecar as
/// its explicit proxy) is decided on the CONNECT authority and tunnelled. A captured connection to a mesh service goes
/// to the TCP proxy when its port is declared TCP or its first bytes are not HTTP (<see cref="ProtocolSniffing"/>).
/// Everything else goes on, bytes unread, to HTTP (CleartextProtocolDetection, then Kestrel). Install after
/// OriginalDestinationMiddleware.
/// </summary>
internal sealed class EgressConnections(
    RuntimeStore runtimes, EgressGate gate, SidecarTelemetry telemetry, Tcp.TcpProxy tcp, TimeProvider time, ILogger<EgressConnections> logger)
{
    /// <summary>How long a client gets to send its first bytes, its whole ClientHello or its CONNECT head.</summary>
    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    private const int MaxConnectHead = 8 * 1024;

    private static readonly byte[] ConnectPrefix = "CONNECT "u8.ToArray();
    private static readonly byte[] HeadEnd = "\r\n\r\n"u8.ToArray();

    private enum Opening
    {
        Http,
        Tls,
        Connect,
        Nothing,
    }

    public void Install(ListenOptions listen) => listen.Use(next => connection => HandleAsync(connection, next));

    private async Task HandleAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var original = connection.Features.Find<OriginalDestinationFeature>()?.EndPoint;
        var runtime = runtimes.Current;
        var snapshot = runtime.Snapshot;

        // A captured connection to a mesh service's address is the mesh's own traffic: HTTP on to the outbound pipeline,
        // anything else a byte stream to the service (Tcp/README.md). A port declared TCP is never sniffed: its server
        // may speak first, and its client then sends nothing.
        if (original is not null && snapshot.Services.TryResolve(original, out var service))
        {
            if (service!.DefaultCluster.Protocol == Config.Resources.AppProtocol.Tcp || !await ProtocolSniffing.IsHttpAsync(connection, time))
            {
                await tcp.OutboundAsync(connection, runtime, service);
                return;
            }

            await next(connection);
            return;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
        timeout.CancelAfter(HandshakeTimeout);
        try
        {
            switch (await PeekOpeningAsync(connection.Transport.Input, original is not null, timeout.Token))
            {
                case Opening.Tls:
                    await PassThroughTlsAsync(connection, runtime, original!, timeout);
                    return;
                case Opening.Connect:
                    await TunnelConnectAsync(connection, runtime, timeout);
                    return;
                case Opening.Nothing:
                    return;
            }
        }
        catch (Exception ex) when (IsConnectionFailure(ex))
        {
            logger.ClosedUndecided(ex);
            connection.Abort();
            return;
        }

        await next(connection);
    }

    /// <summary>Looks at the first bytes without consuming them.</summary>
    private static async Task<Opening> PeekOpeningAsync(PipeReader input, bool captured, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (buffer.IsEmpty && result.IsCompleted)
            {
                input.AdvanceTo(buffer.Start);
                return Opening.Nothing;
            }

            Opening? opening = null;
            if (captured && buffer.FirstSpan[0] == 0x16)
            {
                opening = Opening.Tls;
            }
            else if (!captured)
            {
                var length = (int)Math.Min(buffer.Length, ConnectPrefix.Length);
                Span<byte> head = stackalloc byte[ConnectPrefix.Length];
                buffer.Slice(0, length).CopyTo(head);
                if (!head[..length].SequenceEqual(ConnectPrefix.AsSpan(0, length)))
                {
                    opening = Opening.Http;
                }
                else if (length == ConnectPrefix.Length)
                {
                    opening = Opening.Connect;
                }
            }
            else
            {
                opening = Opening.Http;
            }

            if (opening is null && !result.IsCompleted)
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                continue;
            }

            input.AdvanceTo(buffer.Start);
            return opening ?? Opening.Http;
        }
    }

    private async Task PassThroughTlsAsync(ConnectionContext connection, RuntimeSnapshot runtime, IPEndPoint original, CancellationTokenSource timeout)
    {
        var snapshot = runtime.Snapshot;
        var input = connection.Transport.Input;
        ClientHelloStatus status;
        string? serverName;
        while (true)
        {
            var result = await input.ReadAsync(timeout.Token);
            status = ClientHelloParser.TryParse(result.Buffer, out serverName);
            if (status == ClientHelloStatus.NeedMore && !result.IsCompleted && result.Buffer.Length < ClientHelloParser.MaxBufferedBytes)
            {
                input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                continue;
            }

            input.AdvanceTo(result.Buffer.Start); // the ClientHello itself goes to the destination untouched
            break;
        }

        if (status != ClientHelloStatus.Complete || (serverName is null && snapshot.Egress.Mode == Config.Resources.OutboundTrafficMode.RegistryOnly))
        {
            gate.DenyUnnamed(snapshot.Workload, EgressDenyReason.NoServerName, EgressTraffic.Tls, original);
            connection.Abort();
            return;
        }

        var check = await gate.CheckAsync(snapshot.Egress, snapshot.Workload, serverName ?? "", original.Port, EgressTraffic.Tls, original, timeout.Token);
        if (!check.Allowed)
        {
            connection.Abort();
            return;
        }

        Socket upstream;
        try
        {
            upstream = await EgressResolver.ConnectAsync(check.Addresses, original.Port, timeout.Token);
        }
        catch (SocketException ex)
        {
            logger.TunnelConnectFailed(serverName ?? "-", original.Port, ex.SocketErrorCode);
            connection.Abort();
            return;
        }

        logger.TunnelOpened("tls", serverName, upstream.RemoteEndPoint, check.Decision.Policy);
        await RelayAsync(connection, upstream, runtime.Labels, check.Decision);
    }

    private async Task TunnelConnectAsync(ConnectionContext connection, RuntimeSnapshot runtime, CancellationTokenSource timeout)
    {
        var snapshot = runtime.Snapshot;
        var input = connection.Transport.Input;
        string? requestLine = null;
        while (true)
        {
            var result = await input.ReadAsync(timeout.Token);
            var buffer = result.Buffer;
            var reader = new SequenceReader<byte>(buffer);
            if (reader.TryReadTo(out ReadOnlySequence<byte> head, HeadEnd))
            {
                var firstLineEnd = head.PositionOf((byte)'\r') ?? head.End;
                requestLine = Encoding.ASCII.GetString(head.Slice(0, firstLineEnd));
                input.AdvanceTo(reader.Position); // the head is ours; bytes after it belong to the tunnel
                break;
            }

            if (result.IsCompleted || buffer.Length > MaxConnectHead)
            {
                input.AdvanceTo(buffer.End);
                break;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }

        var output = connection.Transport.Output;
        if (requestLine is null || !TryParseConnect(requestLine, out var host, out var port))
        {
            await WriteReplyAsync(output, "400 Bad Request", "CONNECT needs 'CONNECT host:port HTTP/1.1' and a header block under 8 KiB", timeout.Token);
            return;
        }

        var check = await gate.CheckAsync(snapshot.Egress, snapshot.Workload, host, port, EgressTraffic.Tunnel, original: null, timeout.Token);
        if (!check.Allowed)
        {
            await WriteReplyAsync(output, "403 Forbidden", EgressForwarder.DenialMessage(host, port, check.DenyReason!, null), timeout.Token);
            return;
        }

        Socket upstream;
        try
        {
            upstream = await EgressResolver.ConnectAsync(check.Addresses, port, timeout.Token);
        }
        catch (SocketException ex)
        {
            logger.TunnelConnectFailed(host, port, ex.SocketErrorCode);
            await WriteReplyAsync(output, "502 Bad Gateway", $"egress to {host}:{port} failed: {ex.SocketErrorCode}", timeout.Token, flags: "UF");
            return;
        }

        logger.TunnelOpened("connect", host, upstream.RemoteEndPoint, check.Decision.Policy);
        await output.WriteAsync("HTTP/1.1 200 Connection Established\r\n\r\n"u8.ToArray(), timeout.Token);
        await RelayAsync(connection, upstream, runtime.Labels, check.Decision);
    }

    /// <summary>"CONNECT host:port HTTP/1.x" with an explicit port; IPv6 literals in brackets.</summary>
    internal static bool TryParseConnect(string requestLine, out string host, out int port)
    {
        host = "";
        port = 0;
        var parts = requestLine.Split(' ');
        if (parts.Length != 3 || parts[0] != "CONNECT" || !parts[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
        {
            return false;
        }

        var authority = parts[1];
        var colon = authority.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(authority.AsSpan(colon + 1), System.Globalization.NumberStyles.None, null, out port) || port is < 1 or > 65535)
        {
            return false;
        }

        host = authority[..colon].Trim('[', ']').TrimEnd('.').ToLowerInvariant();
        return host.Length > 0 && Uri.CheckHostName(host) != UriHostNameType.Unknown;
    }

    private static async Task WriteReplyAsync(PipeWriter output, string status, string message, CancellationToken cancellationToken, string flags = "NR")
    {
        var body = message + "\n";
        var reply = $"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nx-meshproxy-response-flags: {flags}\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}";
        await output.WriteAsync(Encoding.UTF8.GetBytes(reply), cancellationToken);
        await output.CompleteAsync();
    }

    /// <summary>
    /// Copies bytes both ways until both sides are done. Each direction's end is passed on as a
    /// half-close, so protocols that finish writing before they finish reading still work. The tunnel is
    /// an Istio TCP stream (reporter=source): its bytes are counted as they are copied, on the upstream's
    /// end, so only the tunnelled bytes count (not the CONNECT head or the sidecar's reply to it).
    /// </summary>
    private async Task RelayAsync(ConnectionContext connection, Socket upstream, SnapshotLabels labels, EgressDecision decision)
    {
        var meter = telemetry.Istio.OpenTcpStream(new TcpLabels
        {
            Workload = labels.Egress(decision.Policy),
            ConnectionSecurityPolicy = PeerTelemetry.SourceSecurityPolicy,
        });
        try
        {
            await using var stream = new MeteredStream(new NetworkStream(upstream, ownsSocket: true), meter, downstream: false);
            var closed = connection.ConnectionClosed;
            var toUpstream = CopyToUpstreamAsync(connection.Transport.Input, stream, upstream, closed);
            var toClient = CopyToClientAsync(stream, connection.Transport.Output, closed);
            await Task.WhenAll(toUpstream, toClient);
        }
        finally
        {
            meter.Close();
        }
    }

    private static async Task CopyToUpstreamAsync(PipeReader input, Stream stream, Socket upstream, CancellationToken cancellationToken)
    {
        try
        {
            await input.CopyToAsync(stream, cancellationToken);
            upstream.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (IsConnectionFailure(ex))
        {
            upstream.Close();
        }
    }

    private static async Task CopyToClientAsync(Stream stream, PipeWriter output, CancellationToken cancellationToken)
    {
        try
        {
            await stream.CopyToAsync(output, cancellationToken);
            await output.CompleteAsync();
        }
        catch (Exception ex) when (IsConnectionFailure(ex))
        {
            await output.CompleteAsync(ex);
        }
    }

    private static bool IsConnectionFailure(Exception ex) =>
        ex is OperationCanceledException or ConnectionResetException or ConnectionAbortedException or SocketException or IOException or InvalidOperationException or ObjectDisposedException;
}
