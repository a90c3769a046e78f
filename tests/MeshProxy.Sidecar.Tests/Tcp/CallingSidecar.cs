using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using MeshProxy.Sidecar.Identity;
using MeshProxy.Sidecar.Tcp;
using MeshProxy.Sidecar.Tests.Identity;

namespace MeshProxy.Sidecar.Tests.Tcp;

/// <summary>
/// The calling side of a TCP stream between sidecars, played by the test over a real socket: mTLS to an inbound
/// listener with a workload's SVID and the ALPN meshproxy-tcp/1, then (unless the test writes its own bytes) the
/// metadata frame each way, then lines to and from the app behind the inbound sidecar.
/// </summary>
internal sealed class CallingSidecar : IAsyncDisposable
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(20);

    private readonly TcpClient _client;
    private readonly StreamReader _reader;

    private CallingSidecar(TcpClient client, SslStream tls)
    {
        _client = client;
        Tls = tls;
        _reader = new StreamReader(tls, Encoding.ASCII);
    }

    public SslStream Tls { get; }

    /// <summary>Connects and completes the handshake as <paramref name="serviceAccount"/>'s sidecar; no frame written yet.</summary>
    public static async Task<CallingSidecar> HandshakeAsync(IPEndPoint inbound, string serviceAccount, CancellationToken cancellationToken)
    {
        var pki = MeshPki.Shared;
        var client = new TcpClient();
        try
        {
            await client.ConnectAsync(inbound, cancellationToken);
            var certificate = X509Certificate2.CreateFromPemFile(pki.Cert(serviceAccount), pki.Key(serviceAccount));
            var tls = new SslStream(client.GetStream());
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "billing",
                ClientCertificates = [certificate],
                ApplicationProtocols = [MeshTls.Tcp],
                // The mesh root, as a sidecar trusts it; an SVID names no host (its identity is a URI SAN), so the name is not checked.
                CertificateChainPolicy = new X509ChainPolicy
                {
                    TrustMode = X509ChainTrustMode.CustomRootTrust,
                    CustomTrustStore = { X509Certificate2.CreateFromPem(File.ReadAllText(pki.Cert("rootA"))) },
                    RevocationMode = X509RevocationMode.NoCheck,
                },
                RemoteCertificateValidationCallback = (_, _, _, errors) => (errors & ~SslPolicyErrors.RemoteCertificateNameMismatch) == SslPolicyErrors.None,
            }, cancellationToken).WaitAsync(Generous, cancellationToken);
            return new CallingSidecar(client, tls);
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <summary>Handshake and the metadata exchange; returns the stream and the inbound side's frame.</summary>
    public static async Task<(CallingSidecar Stream, PeerFrame Frame)> OpenAsync(IPEndPoint inbound, string serviceAccount, CancellationToken cancellationToken)
    {
        var stream = await HandshakeAsync(inbound, serviceAccount, cancellationToken);
        await PeerPreamble.WriteAsync(stream.Tls, $"v1;{serviceAccount};test;;;;", cancellationToken);
        var frame = await PeerPreamble.ReadAsync(stream.Tls, cancellationToken).WaitAsync(Generous, cancellationToken);
        return (stream, frame);
    }

    public async Task WriteLineAsync(string line, CancellationToken cancellationToken)
    {
        await Tls.WriteAsync(Encoding.ASCII.GetBytes(line + "\r\n"), cancellationToken);
        await Tls.FlushAsync(cancellationToken);
    }

    /// <summary>The next line from the app; null when the stream ended (or was reset) first.</summary>
    public async Task<string?> ReadLineAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _reader.ReadLineAsync(cancellationToken).AsTask().WaitAsync(Generous, cancellationToken);
        }
        catch (IOException)
        {
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Tls.DisposeAsync();
        _client.Dispose();
    }
}
