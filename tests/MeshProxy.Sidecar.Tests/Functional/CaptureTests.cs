using System.Net;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Functional;

/// <summary>How an app's traffic reaches the outbound listener: an iptables REDIRECT (the original destination picks the service), or the sidecar as an explicit HTTP proxy.</summary>
public sealed class CaptureTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_redirected_connection_is_routed_by_its_original_destination_not_its_host_header()
    {
        await using var ns = await NetworkNamespace.CreateAsync();
        var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
        var config = new MeshYaml("store", 18081, outboundPort: 15001, inboundPort: 15006).Raw("""
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: billing, namespace: test }
            spec:
              addresses: [127.10.0.10]
              ports: [{ port: 80, targetPort: 18080 }]
              endpoints: [{ address: 127.0.0.1 }]
            """).WriteTo(dir);

        // The app dials the service's virtual address; the kernel hands the connection to 15001.
        await ns.ExecAsync("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "127.10.0.10", "--dport", "80", "-j", "REDIRECT", "--to-ports", "15001");
        var app = ns.Start("dotnet", Path.Combine(AppContext.BaseDirectory, "meshproxy-sample-app.dll"), "billing", "18080");
        var sidecar = ns.Start(RepoPaths.Sidecar("--config", config));
        await sidecar.WaitForLineAsync("outbound listener on", TimeSpan.FromSeconds(30));
        await app.WaitForLineAsync("Now listening", TimeSpan.FromSeconds(30));

        // A Host header naming nothing the mesh knows: only the original destination can route this.
        var body = await ns.ExecAsync("curl", "-s", "--max-time", "10", "-H", "Host: not-a-service.example", "http://127.10.0.10/hello");
        var hello = JsonDocument.Parse(body).RootElement;
        Assert.Equal("billing", hello.GetProperty("service").GetString());
        Assert.Matches("^[0-9a-f-]{36}$", hello.GetProperty("requestId").GetString()); // added by the sidecar

        // Without the capture rule the same address is unreachable: the rule, not luck, carried it.
        await ns.ExecAsync("iptables", "-t", "nat", "-F", "OUTPUT");
        var direct = await ns.ExecAsync("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://127.10.0.10/hello").ContinueWith(t => t.IsFaulted ? "failed" : t.Result, Ct);
        Assert.NotEqual("200", direct);
    }

    [Fact]
    public async Task An_app_using_the_sidecar_as_its_http_proxy_reaches_services_by_name()
    {
        await using var billingApp = await Backend.StartAsync("billing");
        await using var billing = await TestSidecar.StartAsync(new MeshYaml("billing", billingApp.Port));
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1).Service("billing", 80, "HTTP", billing.Inbound.Port));
        await using var storeApp = await Backend.StartAsync("store", outboundProxy: store.OutboundUri.ToString());

        using var client = new HttpClient();
        using var response = await client.GetAsync($"http://127.0.0.1:{storeApp.Port}/call/billing/hello", Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var hello = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement;
        Assert.Equal("billing", hello.GetProperty("service").GetString());
        Assert.Equal("billing", hello.GetProperty("host").GetString());
    }
}
