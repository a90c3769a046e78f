using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using MeshProxy.Sidecar.Tests.Identity;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Tcp;

/// <summary>
/// Plain TCP through two sidecars, as pods meet it: a client namespace and a server namespace joined by a veth pair,
/// the apps captured by iptables (the client's outbound by its uid, the server's inbound by PREROUTING), mTLS between
/// the sidecars with the workloads' SVIDs. The servers are an SMTP-style greeter that speaks first (its port declared
/// TCP) and an echo server on a port declared nothing (HTTP by default: its first bytes say otherwise).
/// </summary>
public sealed partial class TcpMeshTests
{
    private const string ClientIp = "10.77.0.1";
    private const string ServerIp = "10.77.0.2";
    private const int GreeterPort = 2525;
    private const int EchoPort = 7000;
    private const int StoreUid = 65534;
    private const int ImpostorUid = 65533;
    private const int ExtAuthzPort = 9191;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Server_first_and_client_first_tcp_cross_two_sidecars_over_mtls_authorized_by_principal_and_counted_in_istio_tcp_metrics()
    {
        await using var world = await TcpWorld.StartAsync();

        // Server speaks first: the banner arrives although the client sends nothing until it has it.
        var greeter = await world.ClientAsync(StoreUid, "greeter-client", "10.96.0.25", "25");
        Assert.Equal(["220 billing ESMTP ready", "250 ok HELO store", "221 bye"], Lines(greeter));

        // Client first, on a port not declared TCP: 200 KB echoed intact, and the client's half-close reached the echo
        // server (which ends its side only then) through both sidecars.
        var echo = await world.ClientAsync(StoreUid, "echo-client", "10.96.0.7", "7", "200000");
        Assert.True(echo.TryGetProperty("halfClosed", out var halfClosed) && halfClosed.GetBoolean(), echo.ToString());
        Assert.True(echo.GetProperty("echoed").GetBoolean(), echo.ToString());

        // The impostor's sidecar holds a valid SVID of the mesh, but the policy allows only the store's principal:
        // its connection is closed before the greeter's banner reaches it.
        var refused = await world.ClientAsync(ImpostorUid, "greeter-client", "10.96.0.25", "25");
        Assert.Empty(Lines(refused));
        await world.Billing.WaitForLineAsync(
            $"Denied TCP connection to port {GreeterPort} from {MeshPki.Id("impostor")}", TimeSpan.FromSeconds(10));

        // The impostor's own sidecar was told why (the denial in place of the metadata): it records a denial, URBAC,
        // not a connect failure.
        var impostor = await world.WaitForClosedAsync(world.ImpostorStats, "source", 1);
        var deniedSeries = Assert.Single(impostor.Find("istio_tcp_connections_closed_total", ("destination_service_name", "greeter")));
        Assert.Equal("URBAC", deniedSeries.Labels["response_flags"]);

        // Istio's TCP metrics on both sides, with the peers' labels, bytes as the clients counted them (the app's bytes
        // only: not TLS, not the sidecars' metadata).
        var destination = await world.WaitForClosedAsync(world.BillingStats, "destination", 3);
        var fromStore = (Label: "source_principal", Value: MeshPki.Id("store"));
        var greeterSeries = destination.Find("istio_tcp_received_bytes_total", fromStore).ToList();
        Assert.Equal(greeter.GetProperty("sent").GetInt64() + echo.GetProperty("sent").GetInt64(), destination.Sum("istio_tcp_received_bytes_total", fromStore));
        Assert.Equal(greeter.GetProperty("received").GetInt64() + echo.GetProperty("received").GetInt64(), destination.Sum("istio_tcp_sent_bytes_total", fromStore));
        var series = Assert.Single(greeterSeries);
        Assert.Equal("store", series.Labels["source_workload"]);
        Assert.Equal("billing", series.Labels["destination_workload"]);
        Assert.Equal("mutual_tls", series.Labels["connection_security_policy"]);
        Assert.Equal("tcp", series.Labels["request_protocol"]);
        Assert.Equal(2, destination.Sum("istio_tcp_connections_opened_total", fromStore));
        Assert.Equal(1, destination.Sum("istio_tcp_connections_opened_total", ("source_principal", MeshPki.Id("impostor"))));
        Assert.Equal(0, destination.Sum("istio_tcp_received_bytes_total", ("source_principal", MeshPki.Id("impostor"))));

        var source = await world.WaitForClosedAsync(world.StoreStats, "source", 2);
        Assert.Equal(greeter.GetProperty("sent").GetInt64() + echo.GetProperty("sent").GetInt64(), source.Sum("istio_tcp_received_bytes_total", ("reporter", "source")));
        Assert.Equal(greeter.GetProperty("received").GetInt64() + echo.GetProperty("received").GetInt64(), source.Sum("istio_tcp_sent_bytes_total", ("reporter", "source")));
        var toGreeter = Assert.Single(source.Find("istio_tcp_sent_bytes_total", ("destination_service_name", "greeter")));
        Assert.Equal("billing", toGreeter.Labels["destination_workload"]); // from the server sidecar's metadata, in-band
        Assert.Equal(MeshPki.Id("billing"), toGreeter.Labels["destination_principal"]);
        Assert.Equal("store", toGreeter.Labels["source_workload"]);
        Assert.Single(source.Find("istio_tcp_connections_opened_total", ("destination_service_name", "echo")));
    }

    [Fact]
    public async Task The_clusters_max_connections_bounds_tcp_streams_and_the_overflow_is_refused_and_counted()
    {
        await using var world = await TcpWorld.StartAsync(storePolicies: """
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: DestinationPolicy
            metadata: { name: greeter, namespace: test }
            spec:
              host: greeter
              connectionPool: { tcp: { maxConnections: 1 } }
            """);

        // One stream open and held (the cluster's only connection), a second refused meanwhile, a third after it.
        await OneSlotAsync(world);

        // Counted as Envoy counts an overflow: the stream opened and closed with UO and no bytes, and the cluster's
        // overflow counter (as for an HTTP request refused by the same limit).
        var source = await world.WaitForClosedAsync(world.StoreStats, "source", 3);
        var overflow = Assert.Single(source.Find("istio_tcp_connections_closed_total", ("response_flags", "UO")));
        Assert.Equal(1, overflow.Value);
        Assert.Equal("greeter", overflow.Labels["destination_service_name"]);
        Assert.Equal(0, source.Sum("istio_tcp_received_bytes_total", ("response_flags", "UO")));
        Assert.Equal(1, source.Sum("meshproxy_upstream_overflow_total", ("cluster", "outbound|25||greeter.test.svc.cluster.local")));
    }

    [Fact]
    public async Task The_sidecars_inbound_max_connections_bounds_inbound_tcp_streams_and_the_overflow_is_refused_and_counted()
    {
        await using var world = await TcpWorld.StartAsync(billingSpec: "inboundConnectionPool: { tcp: { maxConnections: 1 } }");

        // One stream into billing open and held (the inbound limit's only slot), a second refused by billing's sidecar
        // before it dials the app, a third after it.
        await OneSlotAsync(world);

        // Counted on billing's side as an outbound overflow is: closed with UO and no bytes, and the inbound cluster's
        // overflow counter.
        var destination = await world.WaitForClosedAsync(world.BillingStats, "destination", 3);
        var overflow = Assert.Single(destination.Find("istio_tcp_connections_closed_total", ("response_flags", "UO")));
        Assert.Equal(1, overflow.Value);
        Assert.Equal(0, destination.Sum("istio_tcp_received_bytes_total", ("response_flags", "UO")));
        Assert.Equal(1, destination.Sum("meshproxy_upstream_overflow_total", ("cluster", $"inbound|{GreeterPort}||")));
    }

    [Fact]
    public async Task A_custom_policy_asks_its_ext_authz_provider_once_per_tcp_connection_and_fails_closed_when_it_is_down()
    {
        await using var world = await TcpWorld.StartAsync(billingPolicies: $"""
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: {"{"} name: mesh, namespace: meshproxy-system {"}"}
            spec:
              mtls: {"{"} mode: STRICT {"}"}
              extensionProviders:
              - name: ext-authz
                envoyExtAuthzGrpc: {"{"} service: test/127.0.0.1, port: {ExtAuthzPort}, timeout: 30s {"}"}
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: {"{"} name: ext, namespace: test {"}"}
            spec:
              action: CUSTOM
              provider: {"{"} name: ext-authz {"}"}
              rules:
                - to: [{"{"} operation: {"{"} ports: ["{GreeterPort}", "{EchoPort}"] {"}"} {"}"}]
            """);

        // The grpc-js ext_authz server of the HTTP tests, in the server's namespace: it allows every connection but those
        // to port 7000.
        var provider = NodePeer.StartIn(world.ServerNs, "ext-authz-server.js", $"{ExtAuthzPort}");
        try
        {
            await provider.NextAsync(e => e.TryGetProperty("port", out _));

            // Allowed: the stream flows; the Check names the caller's SPIFFE ID, the billing workload and the port dialled.
            var greeter = await world.ClientAsync(StoreUid, "greeter-client", "10.96.0.25", "25");
            Assert.Equal(["220 billing ESMTP ready", "250 ok HELO store", "221 bye"], Lines(greeter));
            var check = await NextCheckAsync(provider);
            Assert.True(check.GetProperty("tcp").GetBoolean());
            Assert.Equal(MeshPki.Id("store"), check.GetProperty("sourcePrincipal").GetString());
            Assert.Equal(MeshPki.Id("billing"), check.GetProperty("destinationPrincipal").GetString());
            Assert.Equal(GreeterPort, check.GetProperty("destinationPort").GetInt32());
            Assert.Equal(ClientIp, check.GetProperty("sourceAddress").GetString());

            // Denied by the provider (the ALLOW policy would let the store in): nothing is echoed, and the store's sidecar
            // was told, so it records a denial (URBAC). The next Check is this connection's: the greeter's stream was
            // checked once, not once per byte or line.
            var echo = await world.ClientAsync(StoreUid, "echo-client", "10.96.0.7", "7", "1000");
            Assert.False(echo.TryGetProperty("echoed", out var echoed) && echoed.GetBoolean(), echo.ToString()); // ended, or reset
            Assert.Equal(0, echo.GetProperty("received").GetInt64());
            Assert.Equal(EchoPort, (await NextCheckAsync(provider)).GetProperty("destinationPort").GetInt32());
            await world.Billing.WaitForLineAsync(
                $"Denied TCP connection to port {EchoPort} from {MeshPki.Id("store")}: provider ext-authz (CUSTOM policy test/ext, rule 0) said 7 port 7000 is closed",
                TimeSpan.FromSeconds(10));
        }
        finally
        {
            await provider.DisposeAsync();
        }

        // The provider is gone: fail closed (failOpen is off), before the greeter's banner reaches the caller.
        var down = await world.ClientAsync(StoreUid, "greeter-client", "10.96.0.25", "25");
        Assert.Empty(Lines(down));
        await world.Billing.WaitForLineAsync($"Denied TCP connection to port {GreeterPort} from {MeshPki.Id("store")}: provider ext-authz", TimeSpan.FromSeconds(10));

        var source = await world.WaitForClosedAsync(world.StoreStats, "source", 3);
        Assert.Equal("URBAC", Assert.Single(source.Find("istio_tcp_connections_closed_total", ("destination_service_name", "echo"))).Labels["response_flags"]);
        var destination = await world.WaitForClosedAsync(world.BillingStats, "destination", 3);
        Assert.Equal(2, destination.Sum("istio_tcp_connections_closed_total", ("response_flags", "UAEX")));
        Assert.Equal(1, destination.Sum("meshproxy_ext_authz_total", ("provider", "ext-authz"), ("result", "allow")));
        Assert.Equal(1, destination.Sum("meshproxy_ext_authz_total", ("provider", "ext-authz"), ("result", "deny")));
        Assert.Equal(1, destination.Sum("meshproxy_ext_authz_total", ("provider", "ext-authz"), ("result", "error_deny")));
    }

    private static Task<JsonElement> NextCheckAsync(NodePeer provider) =>
        provider.NextAsync(e => e.TryGetProperty("type", out var type) && type.GetString() == "check", TimeSpan.FromSeconds(20));

    /// <summary>
    /// Under a limit of one stream: a stream to the greeter held open gets the banner, a second one meanwhile gets
    /// nothing, and once the first has ended its slot is given back and the next one goes through.
    /// </summary>
    private static async Task OneSlotAsync(TcpWorld world)
    {
        var holder = world.HoldGreeter(StoreUid);
        try
        {
            Assert.Contains("220 billing ESMTP ready", await holder.WaitForLineAsync("holding", TimeSpan.FromSeconds(30)), StringComparison.Ordinal);
            var refused = await world.ClientAsync(StoreUid, "greeter-client", "10.96.0.25", "25");
            Assert.Empty(Lines(refused));
        }
        finally
        {
            await holder.DisposeAsync();
        }

        var later = await RetryAsync(() => world.ClientAsync(StoreUid, "greeter-client", "10.96.0.25", "25"));
        Assert.Equal(["220 billing ESMTP ready", "250 ok HELO store", "221 bye"], Lines(later));
    }

    /// <summary>A client run again while the refusal it met is the slot of a stream that is still being closed.</summary>
    private static async Task<JsonElement> RetryAsync(Func<Task<JsonElement>> client)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            var result = await client();
            if (result.GetProperty("lines").GetArrayLength() > 0 || DateTime.UtcNow > deadline)
            {
                return result;
            }

            await Task.Delay(200, Ct);
        }
    }

    private static string[] Lines(JsonElement result)
    {
        Assert.False(result.TryGetProperty("timeout", out _), result.ToString());
        return [.. result.GetProperty("lines").EnumerateArray().Select(l => l.GetString()!)];
    }

    [GeneratedRegex(@"stats listener on \S+:(\d+)")]
    private static partial Regex StatsAddress();

    private sealed class TcpWorld : IAsyncDisposable
    {
        private readonly string _dir;

        private readonly string _storePolicies;

        private readonly string _billingPolicies;

        private readonly string _billingSpec;

        private TcpWorld(NetworkNamespace client, NetworkNamespace server, string dir, string storePolicies, string billingPolicies, string billingSpec)
        {
            _billingPolicies = billingPolicies;
            _billingSpec = billingSpec;
            ClientNs = client;
            ServerNs = server;
            _dir = dir;
            _storePolicies = storePolicies;
        }

        public NetworkNamespace ClientNs { get; }

        public NetworkNamespace ServerNs { get; }

        public ExternalProcess Billing { get; private set; } = null!;

        public int BillingStats { get; private set; }

        public int StoreStats { get; private set; }

        public int ImpostorStats { get; private set; }

        /// <param name="storePolicies">More resources for the store's sidecar (YAML documents, each after ---).</param>
        /// <param name="billingPolicies">More resources for billing's (the server's) sidecar, likewise.</param>
        /// <param name="billingSpec">One more line of billing's Sidecar spec (a flow mapping, at the spec's indentation).</param>
        public static async Task<TcpWorld> StartAsync(string storePolicies = "", string billingPolicies = "", string billingSpec = "")
        {
            var dir = Path.Combine(Path.GetTempPath(), "meshproxy-tests", Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            var client = await NetworkNamespace.CreateAsync();
            var server = await NetworkNamespace.CreateAsync();
            var world = new TcpWorld(client, server, dir, storePolicies, billingPolicies, billingSpec);
            try
            {
                await world.SetUpAsync();
                return world;
            }
            catch
            {
                await world.DisposeAsync();
                throw;
            }
        }

        /// <summary>Runs a tcp-peer.js client in the client namespace as <paramref name="uid"/> (captured by that uid's sidecar).</summary>
        public async Task<JsonElement> ClientAsync(int uid, params string[] args)
        {
            var output = await ClientNs.ExecAsync(["setpriv", $"--reuid={uid}", $"--regid={uid}", "--clear-groups", "node", Script, .. args]);
            return JsonDocument.Parse(output.Trim().Split('\n')[^1]).RootElement.Clone();
        }

        /// <summary>A tcp-peer.js client that holds a stream to the greeter open until it is disposed (it prints "holding" and the banner).</summary>
        public ExternalProcess HoldGreeter(int uid) =>
            ClientNs.Start("setpriv", $"--reuid={uid}", $"--regid={uid}", "--clear-groups", "node", Script, "greeter-hold", "10.96.0.25", "25");

        /// <summary>Scrapes a sidecar until <paramref name="closed"/> streams of <paramref name="reporter"/> have been counted closed.</summary>
        public async Task<IReadOnlyList<Sample>> WaitForClosedAsync(int statsPort, string reporter, int closed)
        {
            var ns = statsPort == BillingStats ? ServerNs : ClientNs;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
            while (true)
            {
                var samples = Exposition.Parse(await ns.ExecAsync("curl", "-s", "--max-time", "10", $"http://127.0.0.1:{statsPort}/metrics"));
                var count = samples.Sum("istio_tcp_connections_closed_total", ("reporter", reporter));
                if (count >= closed || DateTime.UtcNow > deadline)
                {
                    Assert.Equal(closed, count);
                    return samples;
                }

                await Task.Delay(100, Ct);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await ClientNs.DisposeAsync();
            await ServerNs.DisposeAsync();
            Directory.Delete(_dir, recursive: true);
        }

        private string Script => Path.Combine(_dir, "tcp-peer.js");

        private async Task SetUpAsync()
        {
            await NetworkNamespace.RunAsync("chmod", "755", _dir);
            File.Copy(RepoPaths.Peer("tcp-peer.js"), Script);
            await NetworkNamespace.RunAsync("chmod", "644", Script);

            // Two "pods" joined by a veth pair; the client reaches service addresses through it (the capture takes them first).
            var veth = "mpv" + Guid.NewGuid().ToString("N")[..8];
            await NetworkNamespace.RunAsync("ip", "link", "add", veth + "c", "netns", ClientNs.Name, "type", "veth", "peer", "name", veth + "s", "netns", ServerNs.Name);
            await ClientNs.ExecAsync("ip", "addr", "add", ClientIp + "/24", "dev", veth + "c");
            await ClientNs.ExecAsync("ip", "link", "set", veth + "c", "up");
            await ClientNs.ExecAsync("ip", "route", "add", "default", "dev", veth + "c");
            await ServerNs.ExecAsync("ip", "addr", "add", ServerIp + "/24", "dev", veth + "s");
            await ServerNs.ExecAsync("ip", "link", "set", veth + "s", "up");

            // Capture: each client app's uid to its own sidecar's outbound listener; the server's app ports to its inbound one.
            await ClientNs.ExecAsync("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", $"{StoreUid}", "-j", "REDIRECT", "--to-ports", "15001");
            await ClientNs.ExecAsync("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", $"{ImpostorUid}", "-j", "REDIRECT", "--to-ports", "15011");
            await ServerNs.ExecAsync("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-m", "multiport", "--dports", $"{GreeterPort},{EchoPort}", "-j", "REDIRECT", "--to-ports", "15006");

            var pki = MeshPki.Shared;
            var greeterServer = ServerNs.Start("node", Script, "greeter-server", $"{GreeterPort}");
            var echoServer = ServerNs.Start("node", Script, "echo-server", $"{EchoPort}");
            Billing = ServerNs.Start(RepoPaths.Sidecar("--config", Write("billing", Sidecar("billing", 15101, 15006, pki.WriteFiles(Path.Combine(_dir, "billing-tls"), "billing"), $"""
                ---
                apiVersion: meshproxy.io/v1alpha1
                kind: AuthorizationPolicy
                metadata: {"{"} name: store-only, namespace: test {"}"}
                spec:
                  action: ALLOW
                  rules:
                    - from: [{"{"} source: {"{"} principals: ["cluster.local/ns/test/sa/store"] {"}"} {"}"}]
                      to: [{"{"} operation: {"{"} ports: ["{GreeterPort}", "{EchoPort}"] {"}"} {"}"}]
                {_billingPolicies}
                """, _billingSpec))));
            var store = ClientNs.Start(RepoPaths.Sidecar("--config", Write("store", Sidecar("store", 15001, 15006, pki.WriteFiles(Path.Combine(_dir, "store-tls"), "store"), Services + "\n" + _storePolicies))));
            var impostor = ClientNs.Start(RepoPaths.Sidecar("--config", Write("impostor", Sidecar("impostor", 15011, 15016, pki.WriteFiles(Path.Combine(_dir, "impostor-tls"), "impostor"), Services))));

            BillingStats = int.Parse(StatsAddress().Match(await Billing.WaitForLineAsync("stats listener on", TimeSpan.FromSeconds(60))).Groups[1].Value, CultureInfo.InvariantCulture);
            StoreStats = int.Parse(StatsAddress().Match(await store.WaitForLineAsync("stats listener on", TimeSpan.FromSeconds(60))).Groups[1].Value, CultureInfo.InvariantCulture);
            await Billing.WaitForLineAsync("inbound listener on", TimeSpan.FromSeconds(60));
            ImpostorStats = int.Parse(StatsAddress().Match(await impostor.WaitForLineAsync("stats listener on", TimeSpan.FromSeconds(60))).Groups[1].Value, CultureInfo.InvariantCulture);
            await store.WaitForLineAsync("outbound listener on", TimeSpan.FromSeconds(60));
            await impostor.WaitForLineAsync("outbound listener on", TimeSpan.FromSeconds(60));
            await greeterServer.WaitForLineAsync("listening", TimeSpan.FromSeconds(30));
            await echoServer.WaitForLineAsync("listening", TimeSpan.FromSeconds(30));
        }

        // The greeter's port is declared TCP; the echo's is not (HTTP by default), so its bytes decide.
        private static string Services => $"""
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: {"{"} name: greeter, namespace: test {"}"}
            spec:
              addresses: [10.96.0.25]
              ports: [{"{"} port: 25, targetPort: {GreeterPort}, protocol: TCP {"}"}]
              endpoints: [{"{"} address: {ServerIp}, serviceAccount: billing {"}"}]
            ---
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: {"{"} name: echo, namespace: test {"}"}
            spec:
              addresses: [10.96.0.7]
              ports: [{"{"} port: 7, targetPort: {EchoPort} {"}"}]
              endpoints: [{"{"} address: {ServerIp}, serviceAccount: billing {"}"}]
            """;

        private static string Sidecar(string workload, int outbound, int inbound, TlsFiles tls, string rest, string moreSpec = "") => $"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: {"{"} name: {workload}, namespace: test {"}"}
            spec:
              workload: {"{"} serviceAccount: {workload} {"}"}
              app: {"{"} port: {GreeterPort}, protocol: TCP {"}"}
              listeners: {"{"} outbound: {outbound}, inbound: {inbound}, admin: 0, stats: 0, inboundAddress: 0.0.0.0 {"}"}
              drainDuration: 1s
              tls: {"{"} certificateChainFile: {tls.Chain}, privateKeyFile: {tls.Key}, trustBundleFile: {tls.Bundle} {"}"}
              {moreSpec}
            {rest}
            """;

        private string Write(string name, string yaml)
        {
            var path = Path.Combine(_dir, name + ".yaml");
            File.WriteAllText(path, yaml);
            return path;
        }
    }
}
