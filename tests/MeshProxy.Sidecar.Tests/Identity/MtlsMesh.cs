using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>
/// caller -> sidecar "store" (outbound, mTLS origination) -> sidecar "billing" (inbound, mTLS) -> billing app,
/// each sidecar with spec.tls files from <see cref="MeshPki"/>. Every part is configurable for one test.
/// </summary>
internal sealed class MtlsMesh : IAsyncDisposable
{
    private MtlsMesh()
    {
    }

    public Backend BillingApp { get; private set; } = null!;

    public TestSidecar Billing { get; private set; } = null!;

    public TestSidecar Store { get; private set; } = null!;

    public TlsFiles BillingFiles { get; private set; } = null!;

    public TlsFiles StoreFiles { get; private set; } = null!;

    public LogCapture BillingLog { get; } = new();

    private Func<string?, MeshYaml> _billingConfig = null!;

    public LogCapture StoreLog { get; } = new();

    public HttpClient Client { get; } = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };

    public static async Task<MtlsMesh> StartAsync(
        string billingSvid = "billing",
        string storeSvid = "store",
        string billingBundle = "rootA",
        string storeBundle = "rootA",
        string mode = "STRICT",
        string protocol = "HTTP",
        IReadOnlyList<string>? subjectAltNames = null,
        Action<Microsoft.Extensions.DependencyInjection.IServiceCollection>? configureBilling = null,
        string? billingPolicies = null,
        string? billingLabels = null)
    {
        var pki = MeshPki.Shared;
        var mesh = new MtlsMesh();
        var root = Directory.CreateTempSubdirectory("meshproxy-mtls-").FullName;
        try
        {
            mesh.BillingApp = await Backend.StartAsync("billing", http2Only: protocol != "HTTP");
            mesh.BillingFiles = pki.WriteFiles(Path.Combine(root, "billing"), billingSvid, billingBundle);
            mesh._billingConfig = policies =>
            {
                var yaml = new MeshYaml("billing", mesh.BillingApp.Port, protocol, tls: mesh.BillingFiles, labels: billingLabels).Mtls(mode);
                return policies is null ? yaml : yaml.Raw(policies);
            };
            mesh.Billing = await TestSidecar.StartAsync(
                mesh._billingConfig(billingPolicies), services =>
                {
                    mesh.BillingLog.Register(services);
                    configureBilling?.Invoke(services);
                });
            mesh.StoreFiles = pki.WriteFiles(Path.Combine(root, "store"), storeSvid, storeBundle);
            mesh.Store = await TestSidecar.StartAsync(
                new MeshYaml("store", 1, tls: mesh.StoreFiles).MeshService("billing", 80, protocol, "billing", subjectAltNames, mesh.Billing.Inbound.Port),
                mesh.StoreLog.Register);
            return mesh;
        }
        catch
        {
            await mesh.DisposeAsync();
            throw;
        }
    }

    /// <summary>Rewrites billing's bootstrap file with other policies (raw YAML documents) and waits until its sidecar applied it.</summary>
    public async Task SetBillingPoliciesAsync(string? policies)
    {
        var before = Billing.Store.Current.Version;
        await File.WriteAllTextAsync(Billing.ConfigPath, _billingConfig(policies).ToString(), TestContext.Current.CancellationToken);
        await Eventually.TrueAsync(() => Billing.Store.Current.Version != before, "billing's sidecar to apply its new configuration");
    }

    public HttpRequestMessage ToBilling(string path, Version? version = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, new Uri(Store.OutboundUri, path));
        request.Headers.Host = "billing";
        if (version is not null)
        {
            request.Version = version;
            request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
        }

        return request;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        foreach (var sidecar in new[] { Store, Billing })
        {
            if (sidecar is not null)
            {
                await sidecar.DisposeAsync();
            }
        }

        if (BillingApp is not null)
        {
            await BillingApp.DisposeAsync();
        }
    }
}
