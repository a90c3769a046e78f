using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using k8s;
using k8s.Autorest;
using k8s.Models;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.Identity;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes.Webhook;

/// <summary>Which webhook the mesh CA serves: its configuration, the injector's Service and the Secret its pods mount.</summary>
internal sealed record WebhookCertificateOptions(string Configuration, string ServiceNamespace, string ServiceName, string SecretName)
{
    /// <summary>How often the Secret and caBundle are checked (a root added for a rotation reaches the caBundle within this).</summary>
    public TimeSpan CheckInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>After a failed check (API server away, a conflict with another replica).</summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The serving certificate's lifetime; it is replaced after two thirds of it.</summary>
    public TimeSpan Lifetime { get; init; } = TimeSpan.FromDays(30);

    /// <summary>The names the API server may dial the Service by (it uses name.namespace.svc).</summary>
    public IReadOnlyList<string> DnsNames(string clusterDomain) =>
        [$"{ServiceName}.{ServiceNamespace}.svc", $"{ServiceName}.{ServiceNamespace}.svc.{clusterDomain}", $"{ServiceName}.{ServiceNamespace}", ServiceName];
}

/// <summary>
/// The injection webhook's TLS from the mesh CA, with no script and no cert-manager: the control plane keeps the
/// injector's serving certificate in a Secret (tls.crt, tls.key, ca.crt) and the webhook configuration's caBundle equal
/// to the CA's trust bundle. It replaces the certificate when it is missing, names the wrong host, no longer chains to
/// the bundle (a new root) or is two thirds through its life; the injector re-reads the files when the kubelet updates
/// the mounted Secret. Every replica runs this: writes carry the resourceVersion they read, so when two race, one wins
/// with a 409 for the other, which reads again and finds nothing to do (they sign with the same CA).
/// </summary>
internal sealed class WebhookCertificatePublisher : IAsyncDisposable
{
    public const string CertificateKey = "tls.crt";
    public const string PrivateKeyKey = "tls.key";
    public const string BundleKey = "ca.crt";

    private readonly IKubernetes _client;
    private readonly MeshCertificateAuthority _authority;
    private readonly WebhookCertificateOptions _options;
    private readonly IReadOnlyList<string> _dnsNames;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;

    public WebhookCertificatePublisher(IKubernetes client, MeshCertificateAuthority authority, WebhookCertificateOptions options, string clusterDomain, TimeProvider time, ILogger logger)
    {
        _client = client;
        _authority = authority;
        _options = options;
        _dnsNames = options.DnsNames(clusterDomain);
        _time = time;
        _logger = logger;
    }

    /// <summary>Publishes now and then every <see cref="WebhookCertificateOptions.CheckInterval"/>, in the background.</summary>
    public void Start() => _loop = RunAsync(_stop.Token);

    /// <summary>One check: the Secret first (the injector needs it to start), then the caBundle. True when both are current.</summary>
    public async Task<bool> PublishOnceAsync(CancellationToken cancellationToken)
    {
        var ca = _authority.Current;
        var bundlePem = string.Concat(ca.BundlePem);
        return await PublishSecretAsync(ca.Authority, ca.Bundle, bundlePem, cancellationToken)
            && await PublishBundleAsync(Encoding.ASCII.GetBytes(bundlePem), cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        await Task.Yield();
        while (!cancellationToken.IsCancellationRequested)
        {
            bool current;
            try
            {
                current = await PublishOnceAsync(cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is HttpOperationException or HttpRequestException or CertificateAuthorityException or CryptographicException or OperationCanceledException)
            {
                _logger.WebhookPublishFailed(_options.SecretName, _options.Configuration, Describe(ex), _options.RetryInterval.TotalSeconds);
                current = false;
            }

            try
            {
                await Task.Delay(current ? _options.CheckInterval : _options.RetryInterval, _time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task<bool> PublishSecretAsync(CertificateAuthority authority, TrustBundle bundle, string bundlePem, CancellationToken cancellationToken)
    {
        var ns = _options.ServiceNamespace;
        var secret = await ReadOrNullAsync(() => _client.CoreV1.ReadNamespacedSecretAsync(_options.SecretName, ns, cancellationToken: cancellationToken));
        var reason = secret is null ? "none yet" : WhyReplace(secret, bundle, bundlePem);
        if (reason is null)
        {
            return true;
        }

        var (chain, key) = authority.IssueServingCertificate(_dnsNames, _options.Lifetime);
        var data = new Dictionary<string, byte[]>
        {
            [CertificateKey] = Encoding.ASCII.GetBytes(chain),
            [PrivateKeyKey] = Encoding.ASCII.GetBytes(key),
            [BundleKey] = Encoding.ASCII.GetBytes(bundlePem),
        };
        try
        {
            if (secret is null)
            {
                await _client.CoreV1.CreateNamespacedSecretAsync(
                    new V1Secret
                    {
                        Metadata = new V1ObjectMeta { Name = _options.SecretName, NamespaceProperty = ns, Labels = new Dictionary<string, string> { ["app.kubernetes.io/part-of"] = "meshproxy" } },
                        Type = "kubernetes.io/tls",
                        Data = data,
                    },
                    ns,
                    cancellationToken: cancellationToken);
            }
            else
            {
                // The resourceVersion read above goes back with it: a concurrent writer makes this a 409, not a lost update.
                secret.Data = data;
                await _client.CoreV1.ReplaceNamespacedSecretAsync(secret, _options.SecretName, ns, cancellationToken: cancellationToken);
            }
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.Conflict)
        {
            _logger.WebhookWriteRaced($"secret {ns}/{_options.SecretName}");
            return false;
        }

        _logger.WebhookCertificatePublished(ns, _options.SecretName, string.Join(",", _dnsNames), reason);
        return true;
    }

    private async Task<bool> PublishBundleAsync(byte[] bundle, CancellationToken cancellationToken)
    {
        var configuration = await ReadOrNullAsync(() => _client.AdmissionregistrationV1.ReadMutatingWebhookConfigurationAsync(_options.Configuration, cancellationToken: cancellationToken));
        if (configuration is null)
        {
            _logger.WebhookConfigurationMissing(_options.Configuration, _options.RetryInterval.TotalSeconds);
            return false;
        }

        var changed = 0;
        foreach (var webhook in configuration.Webhooks ?? [])
        {
            // Only the webhooks that call this revision's injector: another revision's CA fills its own.
            if (webhook.ClientConfig?.Service is { } service && service.Name == _options.ServiceName && service.NamespaceProperty == _options.ServiceNamespace
                && !(webhook.ClientConfig.CaBundle ?? []).AsSpan().SequenceEqual(bundle))
            {
                webhook.ClientConfig.CaBundle = bundle;
                changed++;
            }
        }

        if (changed == 0)
        {
            return true;
        }

        try
        {
            await _client.AdmissionregistrationV1.ReplaceMutatingWebhookConfigurationAsync(configuration, _options.Configuration, cancellationToken: cancellationToken);
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.Conflict)
        {
            _logger.WebhookWriteRaced($"mutatingwebhookconfiguration {_options.Configuration}");
            return false;
        }

        _logger.WebhookBundlePublished(_options.Configuration, changed);
        return true;
    }

    /// <summary>Null when the Secret's certificate is good for now; otherwise why it must be replaced.</summary>
    private string? WhyReplace(V1Secret secret, TrustBundle bundle, string bundlePem)
    {
        if (secret.Data is not { } data || !data.TryGetValue(CertificateKey, out var chainBytes) || !data.TryGetValue(PrivateKeyKey, out var keyBytes) || keyBytes.Length == 0)
        {
            return "incomplete";
        }

        if (!data.TryGetValue(BundleKey, out var published) || Encoding.ASCII.GetString(published) != bundlePem)
        {
            return "trust bundle changed";
        }

        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPem(Encoding.ASCII.GetString(chainBytes));
        }
        catch (CryptographicException)
        {
            return "unreadable certificate";
        }

        if (chain.Count == 0)
        {
            return "unreadable certificate";
        }

        using var leaf = chain[0];
        if (!leaf.MatchesHostname(_dnsNames[0], allowWildcards: false, allowCommonName: false))
        {
            return $"does not name {_dnsNames[0]}";
        }

        var now = _time.GetUtcNow();
        var notBefore = new DateTimeOffset(leaf.NotBefore.ToUniversalTime(), TimeSpan.Zero);
        var notAfter = new DateTimeOffset(leaf.NotAfter.ToUniversalTime(), TimeSpan.Zero);
        if (now >= notBefore + ((notAfter - notBefore) * 2 / 3))
        {
            return "due for renewal";
        }

        using var verifier = new X509Chain();
        verifier.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        verifier.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        verifier.ChainPolicy.VerificationTime = now.UtcDateTime;
        verifier.ChainPolicy.CustomTrustStore.AddRange(bundle.Roots.ToArray());
        verifier.ChainPolicy.ExtraStore.AddRange(chain.Skip(1).ToArray());
        var valid = verifier.Build(leaf);
        foreach (var certificate in chain.Skip(1))
        {
            certificate.Dispose();
        }

        return valid ? null : "not signed by the mesh CA";
    }

    private static async Task<T?> ReadOrNullAsync<T>(Func<Task<T>> read)
        where T : class
    {
        try
        {
            return await read();
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    private static string Describe(Exception ex) => ex is HttpOperationException http
        ? $"{(int)http.Response.StatusCode} {http.Response.ReasonPhrase}: {http.Response.Content}"
        : ex.Message;
}
