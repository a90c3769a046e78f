using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

public sealed class NginxBackendTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Nginx_as_the_app_behind_both_sidecars_serves_static_files_and_sees_mesh_headers()
    {
        await using var nginx = await NginxServer.StartAsync();
        await using var web = await TestSidecar.StartAsync(new MeshYaml("web", nginx.Port));
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("web", 80, "HTTP", web.Inbound.Port));
        using var client = new HttpClient();

        for (var i = 0; i < 20; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(store.OutboundUri, "/1k.txt"));
            request.Headers.Host = "web";
            using var response = await client.SendAsync(request, Ct);
            Assert.Equal(1024, (await response.Content.ReadAsByteArrayAsync(Ct)).Length);
        }

        using var headers = new HttpRequestMessage(HttpMethod.Get, new Uri(store.OutboundUri, "/headers"));
        headers.Headers.Host = "web.test";
        var text = await (await client.SendAsync(headers, Ct)).Content.ReadAsStringAsync(Ct);
        Assert.Matches("^rid=[0-9a-f-]{36} xff=127.0.0.1 host=web.test\n$", text);
    }
}
