using System.Net;
using System.Text.Json;
using MeshProxy.Identity;

namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>
/// PeerAuthentication applied by the inbound listener, over real sockets: the real curl and openssl s_client as
/// clients from outside the mesh, the "store" sidecar as the mesh caller (mTLS origination), the "billing" sidecar
/// whose bootstrap holds the policies, rewritten while traffic flows.
/// </summary>
public sealed class PeerAuthenticationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A namespace-wide PeerAuthentication with <paramref name="mode"/> (also used by Tcp/TcpPeerAuthenticationTests).</summary>
    internal static string Namespace(string mode) => $"""
        apiVersion: meshproxy.io/v1alpha1
        kind: PeerAuthentication
        metadata: {"{"} name: default, namespace: test {"}"}
        spec: {"{"} mtls: {"{"} mode: {mode} {"}"} {"}"}
        """;

    internal const string OnlyStore = """

        ---
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: only-store, namespace: test }
        spec:
          action: ALLOW
          rules: [{ from: [{ source: { principals: [cluster.local/ns/test/sa/store] } }] }]
        """;

    /// <summary>curl, plaintext, a new connection: the HTTP status, or 0 when the connection was refused or reset (curl's own failure).</summary>
    private static async Task<int> CurlAsync(IPEndPoint inbound, string path = "/hello")
    {
        var result = await Run.ProcessAsync("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-H", "Host: billing", $"http://{inbound}{path}"]);
        return result.Exit == 0 ? int.Parse(result.Stdout, System.Globalization.CultureInfo.InvariantCulture) : 0;
    }

    private static async Task<double> PlaintextCountAsync(MtlsMesh mesh, string mode)
    {
        using var client = new HttpClient();
        var samples = await Exposition.ScrapeAsync(client, mesh.Billing.Stats);
        return samples.Sum("meshproxy_inbound_plaintext_connections_total", ("port", mesh.BillingApp.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("mode", mode));
    }

    [Fact]
    public async Task Strict_by_default_refuses_a_plaintext_curl_and_an_openssl_client_without_a_certificate()
    {
        await using var mesh = await MtlsMesh.StartAsync();

        Assert.Equal(0, await CurlAsync(mesh.Billing.Inbound));
        Assert.Equal(1, mesh.Billing.Identity.Counters.PlaintextRefused);
        var refusal = Assert.Single(mesh.BillingLog.WithEvent(403));
        Assert.Contains($"port {mesh.BillingApp.Port}", refusal, StringComparison.Ordinal);
        Assert.Contains("(set by MeshConfig/meshproxy-system/mesh)", refusal, StringComparison.Ordinal); // MtlsMesh writes a MeshConfig


        await using (var anonymous = MeshPki.Connect(mesh.Billing.Inbound.Port, null, "-quiet"))
        {
            Assert.False(await anonymous.GetAsync("/hello", 1, timeoutMs: 3_000), "a client without a certificate got an answer: " + anonymous.Output);
        }

        await Eventually.TrueAsync(() => mesh.Billing.Identity.Counters.InboundRefusedFor(PeerVerificationFailure.NoCertificate) == 1, "the refusal to be counted");
        using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(0, await PlaintextCountAsync(mesh, "PERMISSIVE"));
    }

    [Fact]
    public async Task Permissive_serves_plaintext_curl_and_mtls_counts_the_plaintext_and_principal_policy_denies_it()
    {
        await using var mesh = await MtlsMesh.StartAsync(billingPolicies: Namespace("PERMISSIVE"));

        Assert.Equal(200, await CurlAsync(mesh.Billing.Inbound));
        using (var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(1, await PlaintextCountAsync(mesh, "PERMISSIVE"));
        Assert.Equal(1, mesh.Billing.Identity.Counters.InboundHandshakes);

        // A plaintext request has no peer identity: a policy allowing only store's principal refuses it, not store.
        await mesh.SetBillingPoliciesAsync(Namespace("PERMISSIVE") + OnlyStore);
        Assert.Equal(403, await CurlAsync(mesh.Billing.Inbound));
        using (var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(2, await PlaintextCountAsync(mesh, "PERMISSIVE"));
    }

    [Fact]
    public async Task Disable_serves_plaintext_only()
    {
        await using var mesh = await MtlsMesh.StartAsync(billingPolicies: Namespace("DISABLE"));

        Assert.Equal(200, await CurlAsync(mesh.Billing.Inbound));
        Assert.Equal(1, await PlaintextCountAsync(mesh, "DISABLE"));

        await using (var client = MeshPki.Connect(mesh.Billing.Inbound.Port, "store", "-quiet"))
        {
            Assert.False(await client.GetAsync("/hello", 1, timeoutMs: 3_000), "TLS got an answer on a DISABLE port: " + client.Output);
        }

        await Eventually.TrueAsync(() => mesh.Billing.Identity.Counters.TlsOnDisabledPort == 1, "the TLS connection to be refused and counted");
        Assert.Contains("PeerAuthentication/test/default", Assert.Single(mesh.BillingLog.WithEvent(420)), StringComparison.Ordinal);
        Assert.Equal(0, mesh.Billing.Identity.Counters.InboundHandshakes);

        // A mesh caller that does not hold billing's policy (here its own file lacks it; a control plane sends it,
        // and the caller then sends plaintext: ControlPlane.Tests' AutoMtlsTests) originates mTLS: refused like any
        // TLS client, and told so as 503.
        using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
    }

    [Fact]
    public async Task Port_level_mode_of_a_workload_policy_wins_and_config_dump_says_which_resource_set_it()
    {
        await using var mesh = await MtlsMesh.StartAsync(billingLabels: "app: billing", billingPolicies: Namespace("DISABLE"));
        var port = mesh.BillingApp.Port;
        await mesh.SetBillingPoliciesAsync(Namespace("DISABLE") + $"""

            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: PeerAuthentication
            metadata: {"{"} name: billing, namespace: test {"}"}
            spec:
              selector: {"{"} matchLabels: {"{"} app: billing {"}"} {"}"}
              mtls: {"{"} mode: STRICT {"}"}
              portLevelMtls: {"{"} {port}: {"{"} mode: PERMISSIVE {"}"}, 9999: {"{"} mode: UNSET {"}"}, 9998: {"{"} mode: DISABLE {"}"} {"}"}
            """);

        Assert.Equal(200, await CurlAsync(mesh.Billing.Inbound));
        using (var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        using var http = new HttpClient();
        var dump = JsonDocument.Parse(await http.GetStringAsync($"http://{mesh.Billing.Admin}/config_dump", Ct)).RootElement.GetProperty("inboundMtls");
        Assert.Equal("STRICT", dump.GetProperty("default").GetProperty("mode").GetString());
        Assert.Equal("PeerAuthentication/test/billing", dump.GetProperty("default").GetProperty("setBy").GetString());
        var ports = dump.GetProperty("ports").EnumerateArray().ToDictionary(p => p.GetProperty("port").GetInt32(), p => (p.GetProperty("mode").GetString(), p.GetProperty("setBy").GetString()));
        Assert.Equal(("PERMISSIVE", $"PeerAuthentication/test/billing portLevelMtls[{port}]"), ports[port]);
        Assert.Equal(("DISABLE", "PeerAuthentication/test/billing portLevelMtls[9998]"), ports[9998]);
        Assert.False(ports.ContainsKey(9999)); // UNSET: the workload's mode, no entry of its own
    }

    [Fact]
    public async Task Permissive_to_strict_with_traffic_flowing_mtls_never_fails_and_plaintext_starts_failing()
    {
        await using var mesh = await MtlsMesh.StartAsync(billingPolicies: Namespace("PERMISSIVE"));
        Assert.Equal(200, await CurlAsync(mesh.Billing.Inbound));

        // A plaintext keep-alive connection opened under PERMISSIVE, and mTLS requests from store all along.
        using var held = new HttpClient(new SocketsHttpHandler { UseProxy = false, MaxConnectionsPerServer = 1 });
        Assert.Equal(HttpStatusCode.OK, (await held.GetAsync($"http://{mesh.Billing.Inbound}/hello", Ct)).StatusCode);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var failures = new List<string>();
        var sent = 0;
        var meshTraffic = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), CancellationToken.None);
                    if (response.StatusCode != HttpStatusCode.OK)
                    {
                        lock (failures)
                        {
                            failures.Add(response.StatusCode.ToString());
                        }
                    }
                }
                catch (HttpRequestException ex)
                {
                    lock (failures)
                    {
                        failures.Add(ex.Message);
                    }
                }

                Interlocked.Increment(ref sent);
            }
        }, CancellationToken.None);

        await Eventually.TrueAsync(() => Volatile.Read(ref sent) >= 20, "mTLS traffic to flow before the switch");
        var sentBefore = Volatile.Read(ref sent);
        await mesh.SetBillingPoliciesAsync(Namespace("STRICT"));
        await Eventually.TrueAsync(() => Volatile.Read(ref sent) >= sentBefore + 20, "mTLS traffic to flow after the switch");

        // New plaintext connections are refused from now on; the one opened before keeps its mode until it closes.
        Assert.Equal(0, await CurlAsync(mesh.Billing.Inbound));
        Assert.Equal(HttpStatusCode.OK, (await held.GetAsync($"http://{mesh.Billing.Inbound}/hello", Ct)).StatusCode);
        Assert.True(mesh.Billing.Identity.Counters.PlaintextRefused >= 1);

        await stop.CancelAsync();
        await meshTraffic;
        Assert.True(failures.Count == 0, $"{failures.Count} of {sent} mTLS requests failed: {string.Join("; ", failures.Take(5))}");
    }
}
