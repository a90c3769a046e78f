using System.Net.Security;
using System.Security.Authentication;
using MeshProxy.Identity;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// The control plane's own certificate for gRPC over TLS: an SVID for
/// <c>spiffe://&lt;td&gt;/ns/&lt;rootNamespace&gt;/sa/meshproxy-controlplane</c> that its CA issues to it in
/// process, renewed at half-life by the same <see cref="SvidRotator"/> the sidecars run. Sidecars verify it
/// like any mesh peer (chain to the bundle, that SPIFFE ID), so no DNS name has to be predicted.
/// Each handshake reads the current certificate, so renewal never touches open connections.
/// When the CA itself changes (a rotation step, a switch of CA, a MeshConfig reload) the certificate is issued again at
/// once rather than at half-life: the control plane's certificate is then always from the signer of the moment, which
/// every sidecar's caFile has held since the step before, and never from a root about to leave the bundle.
/// </summary>
internal sealed class ControlPlaneTlsIdentity : IAsyncDisposable
{
    private readonly SvidStore _store = new();
    private readonly CancellationTokenSource _stop = new();
    private Task _rotation = Task.CompletedTask;

    /// <summary>The SPIFFE ID it presents; null until <see cref="StartAsync"/>.</summary>
    public SpiffeId? SpiffeId { get; private set; }

    public SvidStore Store => _store;

    /// <summary>
    /// Kubernetes mode (set by the host): the check of an optional client certificate, made per connection (the
    /// config stream's SVID, see Discovery/StreamAuthenticator). Null: no certificate is asked for.
    /// </summary>
    public Func<Microsoft.AspNetCore.Connections.ConnectionContext, RemoteCertificateValidationCallback>? ClientCertificates { get; set; }

    /// <summary>
    /// Issues the first certificate (in process, so at once) and starts renewing it. Call before the
    /// listener accepts connections: until then a handshake has no certificate to present and fails.
    /// </summary>
    public async Task StartAsync(MeshCertificateAuthority authority, string serviceAccount, ILoggerFactory loggers, TimeProvider time, CancellationToken cancellationToken)
    {
        var mesh = authority.Current.Mesh;
        var id = SpiffeId.ForWorkload(mesh.TrustDomain, mesh.RootNamespace, serviceAccount);
        SpiffeId = id;
        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _store.Changed += (_, _) => first.TrySetResult();
        var rotator = new SvidRotator(_store, id, (csr, _) => Task.FromResult(Issue(authority, csr, id)), logger: loggers.CreateLogger<SvidRotator>(), time: time);
        _rotation = rotator.RunAsync(_stop.Token);
        var logger = loggers.CreateLogger<ControlPlaneTlsIdentity>();
        authority.Changed += _ => Reissue(authority, id, logger);
        // A bound on start-up, not logic: issuing in process takes milliseconds, so this stays on the wall clock.
        await first.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
    }

    /// <summary>HTTP/2 over TLS 1.2/1.3 with ALPN h2, presenting the current certificate.</summary>
    public void Configure(ListenOptions listen)
    {
        listen.Protocols = HttpProtocols.Http2;
        listen.UseHttps(new TlsHandshakeCallbackOptions
        {
            OnConnection = context => ValueTask.FromResult(new SslServerAuthenticationOptions
            {
                ServerCertificateContext = _store.CertificateContext,
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                ApplicationProtocols = [SslApplicationProtocol.Http2],
                // Callers authenticate with their bootstrap token; they have no certificate before their first CSR.
                // With ClientCertificates set a certificate is asked for, and one presented must pass that check.
                ClientCertificateRequired = ClientCertificates is not null,
                RemoteCertificateValidationCallback = ClientCertificates?.Invoke(context.Connection),
            }),
        });
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _rotation;
        _stop.Dispose();
    }

    /// <summary>A certificate from the CA as it is now, in place of the current one (whose renewal stays scheduled: one more is harmless).</summary>
    private void Reissue(MeshCertificateAuthority authority, SpiffeId id, ILogger logger)
    {
        if (_stop.IsCancellationRequested || _store.Current is null)
        {
            return;
        }

        try
        {
            using var key = WorkloadKey.Create();
            var issued = Issue(authority, key.CreateSigningRequestPem(id), id);
            _store.Update(X509Svid.Create(key, issued.CertificateChainPem, id), TrustBundle.FromPem(issued.TrustBundlePem));
        }
        catch (Exception ex) when (ex is SigningRefusedException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            // The current certificate stays; its scheduled renewal tries again.
            logger.TlsReissueFailed(id.Value, ex.Message);
        }
    }

    private static IssuedCertificate Issue(MeshCertificateAuthority authority, string csr, SpiffeId id)
    {
        var current = authority.Current;
        var issued = current.Authority.Sign(csr, id);
        return issued with { TrustBundlePem = string.Concat(current.BundlePem) };
    }
}
