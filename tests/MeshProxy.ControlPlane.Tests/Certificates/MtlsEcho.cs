using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using MeshProxy.Identity;

namespace MeshProxy.ControlPlane.Tests.Certificates;

/// <summary>
/// An echo server over mutual TLS on loopback (the kit's <see cref="TlsEchoServer"/>), presenting and checking
/// certificates from an <see cref="SvidStore"/> at every handshake, the way the sidecar's listeners do; and its client.
/// </summary>
internal static class MtlsEcho
{
    /// <param name="time">The clock certificates are checked on (a test's fake clock, when the CA runs on it).</param>
    public static TlsEchoServer Server(SvidStore store, string trustDomain, TimeProvider? time = null)
    {
        var verify = new PeerCertificateVerifier(time).CreateCallback(() => store.TrustBundle!, trustDomain, PeerRole.Client);
        return new TlsEchoServer(() => new SslServerAuthenticationOptions
        {
            ServerCertificateContext = store.CertificateContext,
            ClientCertificateRequired = true,
            RemoteCertificateValidationCallback = verify,
            EnabledSslProtocols = SslProtocols.Tls13,
        });
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

    public static Task<MtlsEchoClient> ConnectAsync(int port, SvidStore store, string trustDomain, CancellationToken cancellationToken = default) =>
        ConnectAsync(port, store, trustDomain, null, cancellationToken);

    /// <param name="time">The clock the server's certificate is checked on (a test's fake clock, when the CA runs on it).</param>
    public static async Task<MtlsEchoClient> ConnectAsync(int port, SvidStore store, string trustDomain, TimeProvider? time, CancellationToken cancellationToken = default)
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
                RemoteCertificateValidationCallback = new PeerCertificateVerifier(time).CreateCallback(() => store.TrustBundle!, trustDomain, PeerRole.Server),
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

/// <summary>
/// Load for a rotation test: <paramref name="loops"/> loops, each opening a new mutual-TLS connection to the echo server
/// (a full handshake, both sides verified) and echoing one line per iteration, until disposed. Counts successes,
/// keeps every failure (described by <c>describe</c>) and the issuers of the certificates the server presented.
/// </summary>
internal sealed class MtlsLoad : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly List<string> _failures = [];
    private readonly HashSet<string> _issuers = [];
    private readonly Task[] _loops;
    private int _ok;

    public MtlsLoad(int port, SvidStore client, string trustDomain, TimeProvider? time = null, Func<Exception, string>? describe = null, int loops = 4)
    {
        _loops = [.. Enumerable.Range(0, loops).Select(i => Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    await using var c = await MtlsEchoClient.ConnectAsync(port, client, trustDomain, time);
                    if (await c.EchoAsync("ping " + i) != "ping " + i)
                    {
                        throw new IOException("bad echo");
                    }

                    Interlocked.Increment(ref _ok);
                    lock (_issuers)
                    {
                        _issuers.Add(c.ServerCertificate.Issuer);
                    }
                }
                catch (Exception ex) when (ex is IOException or AuthenticationException or SocketException)
                {
                    lock (_failures)
                    {
                        _failures.Add(describe?.Invoke(ex) ?? ex.Message);
                    }
                }
            }
        }))];
    }

    public int Ok => Volatile.Read(ref _ok);

    public IReadOnlyList<string> Failures
    {
        get
        {
            lock (_failures)
            {
                return [.. _failures];
            }
        }
    }

    public IReadOnlySet<string> Issuers
    {
        get
        {
            lock (_issuers)
            {
                return _issuers.ToHashSet();
            }
        }
    }

    /// <summary>Stops the loops and waits for them.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_loops);
        _stop.Dispose();
    }
}
