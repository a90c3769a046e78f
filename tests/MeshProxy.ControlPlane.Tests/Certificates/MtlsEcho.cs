using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity;

namespace MeshProxy.ControlPlane.Tests.Certificates;

/// <summary>
/// A line-echo server over mutual TLS on loopback, presenting and checking certificates from an
/// <see cref="SvidStore"/> at every handshake, the way the sidecar's listeners do; and its client.
/// </summary>
internal sealed class MtlsEchoServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly SvidStore _store;
    private readonly RemoteCertificateValidationCallback _verify;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accept;

    public MtlsEchoServer(SvidStore store, string trustDomain)
    {
        _store = store;
        _verify = new PeerCertificateVerifier().CreateCallback(() => store.TrustBundle!, trustDomain, PeerRole.Client);
        _listener.Start();
        _accept = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accept;
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var socket = await _listener.AcceptTcpClientAsync(_stop.Token);
                _ = Task.Run(() => ServeAsync(socket));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task ServeAsync(TcpClient socket)
    {
        using (socket)
        {
            try
            {
                await using var tls = new SslStream(socket.GetStream());
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = _store.CertificateContext,
                    ClientCertificateRequired = true,
                    RemoteCertificateValidationCallback = _verify,
                    EnabledSslProtocols = SslProtocols.Tls13,
                }, _stop.Token);
                using var reader = new StreamReader(tls);
                await using var writer = new StreamWriter(tls) { AutoFlush = true };
                while (await reader.ReadLineAsync(_stop.Token) is { } line)
                {
                    await writer.WriteLineAsync(line);
                }
            }
            catch (Exception ex) when (ex is IOException or AuthenticationException or OperationCanceledException or ObjectDisposedException)
            {
            }
        }
    }
}

/// <summary>One client connection; <see cref="ServerCertificate"/> is what the server presented.</summary>
internal sealed class MtlsEchoClient : IAsyncDisposable
{
    private readonly TcpClient _socket;
    private readonly SslStream _tls;
    private readonly StreamReader _reader;
    private readonly StreamWriter _writer;

    private MtlsEchoClient(TcpClient socket, SslStream tls, X509Certificate2 server)
    {
        _socket = socket;
        _tls = tls;
        ServerCertificate = server;
        _reader = new StreamReader(tls);
        _writer = new StreamWriter(tls) { AutoFlush = true };
    }

    public X509Certificate2 ServerCertificate { get; }

    public static async Task<MtlsEchoClient> ConnectAsync(int port, SvidStore store, string trustDomain, CancellationToken cancellationToken = default)
    {
        var socket = new TcpClient();
        try
        {
            await socket.ConnectAsync(IPAddress.Loopback, port, cancellationToken);
            var tls = new SslStream(socket.GetStream());
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "mesh",
                ClientCertificateContext = store.CertificateContext,
                RemoteCertificateValidationCallback = new PeerCertificateVerifier().CreateCallback(() => store.TrustBundle!, trustDomain, PeerRole.Server),
                EnabledSslProtocols = SslProtocols.Tls13,
            }, cancellationToken);
            return new MtlsEchoClient(socket, tls, new X509Certificate2(tls.RemoteCertificate!));
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public async Task<string?> EchoAsync(string line, CancellationToken cancellationToken = default)
    {
        await _writer.WriteLineAsync(line.AsMemory(), cancellationToken);
        return await _reader.ReadLineAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await _tls.DisposeAsync();
        _socket.Dispose();
    }
}
