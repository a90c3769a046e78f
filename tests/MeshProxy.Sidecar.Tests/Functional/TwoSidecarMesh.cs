using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>
/// caller -> sidecar "store" (outbound) -> sidecar "billing" (inbound) -> billing app, all real
/// sockets on loopback. Shared by the tests of one class; each test makes its own requests.
/// </summary>
public sealed class TwoSidecarMesh : IAsyncLifetime
{
    private Backend? _billingApp;
    private TestSidecar? _billing;
    private TestSidecar? _store;

    internal Backend BillingApp => _billingApp!;

    internal TestSidecar Billing => _billing!;

    internal TestSidecar Store => _store!;

    public HttpClient Client { get; } = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };

    public async ValueTask InitializeAsync()
    {
        _billingApp = await Backend.StartAsync("billing");
        _billing = await TestSidecar.StartAsync(new MeshYaml("billing", _billingApp.Port, "HTTP"));
        _store = await TestSidecar.StartAsync(new MeshYaml("store", 1)
            .Service("billing", 80, "HTTP", _billing.Inbound.Port)
            .Service("refusing", 80, "HTTP", ClosedPort.Next()));
    }

    /// <summary>A request from the store app to billing, through both sidecars.</summary>
    public HttpRequestMessage ToBilling(HttpMethod method, string path)
    {
        var request = new HttpRequestMessage(method, new Uri(Store.OutboundUri, path));
        request.Headers.Host = "billing";
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
    }
}
