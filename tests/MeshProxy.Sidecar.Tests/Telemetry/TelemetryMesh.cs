using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>
/// caller -> sidecar "store" (outbound) -> sidecar "billing" (inbound) -> billing app, with access logs
/// written to files. "refusing" is a service whose only endpoint refuses connections.
/// </summary>
public sealed class TelemetryMesh : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "meshproxy-telemetry", Guid.NewGuid().ToString("N"));
    private Backend? _billingApp;
    private TestSidecar? _billing;
    private TestSidecar? _store;

    internal Backend BillingApp => _billingApp!;

    internal TestSidecar Billing => _billing!;

    internal TestSidecar Store => _store!;

    public string StoreAccessLog => Path.Combine(_dir, "store-access.log");

    public string BillingAccessLog => Path.Combine(_dir, "billing-access.log");

    public HttpClient Client { get; } = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };

    public static string MeshConfig(string accessLogPath, bool accessLog = true, string tracing = "") => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: MeshConfig
        metadata: { name: default, namespace: meshproxy-system }
        spec:
          trustDomain: cluster.local
          accessLog: { enabled: {{(accessLog ? "true" : "false")}}, path: {{accessLogPath}} }
        {{tracing}}
        """;

    public async ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        _billingApp = await Backend.StartAsync("billing");
        _billing = await TestSidecar.StartAsync(new MeshYaml("billing", _billingApp.Port, "HTTP").Raw(MeshConfig(BillingAccessLog)));
        _store = await TestSidecar.StartAsync(new MeshYaml("store", 1)
            .Service("billing", 80, "HTTP", _billing.Inbound.Port)
            .Service("refusing", 80, "HTTP", ClosedPort.Next())
            .Raw(MeshConfig(StoreAccessLog)));
    }

    public HttpRequestMessage ToService(string host, HttpMethod method, string path)
    {
        var request = new HttpRequestMessage(method, new Uri(Store.OutboundUri, path));
        request.Headers.Host = host;
        return request;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        if (_store is not null)
        {
            await _store.DisposeAsync();
        }

        if (_billing is not null)
        {
            await _billing.DisposeAsync();
        }

        if (_billingApp is not null)
        {
            await _billingApp.DisposeAsync();
        }

        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
