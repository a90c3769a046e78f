using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using MeshProxy.Config.Resources;
using MeshProxy.Injection.Tests.Infrastructure;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// Both halves of proxy.meshproxy.io/config together: the injector's MESHPROXY_PROXY_CONFIG handed to the real sidecar
/// process, which must listen where the fragment says and drain for as long as it says, over its bootstrap's values.
/// </summary>
public sealed class ProxyConfigEndToEndTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_sidecar_started_with_the_injectors_environment_listens_and_drains_as_the_pods_fragment_says()
    {
        // The fragment's ports are reserved (bound, not listening) until the sidecar listens on them; see PortReservation.
        using var adminReservation = new PortReservation();
        using var outboundReservation = new PortReservation();
        int appPort = ClosedPort.Next(), adminPort = adminReservation.Port, outboundPort = outboundReservation.Port;
        var pod = JsonNode.Parse($$"""
            {
              "apiVersion": "v1", "kind": "Pod",
              "metadata": { "name": "web-0", "annotations": {
                "proxy.meshproxy.io/config": "drainDuration: 2s\nlisteners: { admin: {{adminPort}}, outbound: {{outboundPort}} }\n" } },
              "spec": { "containers": [ { "name": "web", "image": "python:3", "ports": [ { "containerPort": {{appPort}} } ] } ] }
            }
            """)!.AsObject();
        var injected = new SidecarInjector(InjectionGoldenTests.Options).Inject(pod, new InjectionTarget("shop")).Pod;
        var sidecar = injected["spec"]!["initContainers"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == SidecarInjector.SidecarContainerName)!;
        var fragment = sidecar["env"]!.AsArray().Single(e => e!["name"]!.GetValue<string>() == SidecarOverride.EnvironmentVariable)!["value"]!.GetValue<string>();

        var dir = Directory.CreateTempSubdirectory("meshproxy-proxy-config-").FullName;
        try
        {
            // The bootstrap asks for a 30 s drain and any free ports; the fragment must win on both.
            var config = Path.Combine(dir, "sidecar.yaml");
            await File.WriteAllTextAsync(config, $$"""
                apiVersion: meshproxy.io/v1alpha1
                kind: Sidecar
                metadata: { name: web, namespace: shop }
                spec:
                  app: { port: {{appPort}} }
                  listeners: { outbound: 0, inbound: 0, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
                  drainDuration: 30s
                """, Ct);
            await using var proxy = ExternalProcess.Start("env", [$"{SidecarOverride.EnvironmentVariable}={fragment}", "dotnet", RepoPaths.Bin("meshproxy-sidecar"), "--config", config]);
            Assert.EndsWith($"admin listener on 127.0.0.1:{adminPort}", await proxy.WaitForLineAsync("admin listener on", TimeSpan.FromSeconds(30)), StringComparison.Ordinal);
            await proxy.WaitForLineAsync("outbound listener on", TimeSpan.FromSeconds(30));
            using (var admin = new HttpClient { Timeout = TimeSpan.FromSeconds(10) })
            {
                using var dump = await admin.GetAsync($"http://127.0.0.1:{adminPort}/config_dump", Ct);
                Assert.Equal(HttpStatusCode.OK, dump.StatusCode);
            }

            Assert.True(await CanConnectAsync(outboundPort));

            var stopping = Stopwatch.StartNew();
            var kill = await Run.ProcessAsync("kill", ["-TERM", proxy.Id.ToString(CultureInfo.InvariantCulture)]);
            Assert.Equal(0, kill.Exit);
            Assert.Contains("outbound serves for 2s more", await proxy.WaitForLineAsync("Draining", TimeSpan.FromSeconds(10)), StringComparison.Ordinal);
            Assert.True(await CanConnectAsync(outboundPort), "outbound must keep serving the app during the drain");
            Assert.True(await proxy.ExitsWithinAsync(TimeSpan.FromSeconds(15)), "the sidecar drained for longer than the fragment's 2s:\n" + proxy.Output);
            Assert.Equal(0, proxy.ExitCode);
            Assert.InRange(stopping.Elapsed, TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(15));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task The_sidecar_given_an_invalid_fragment_refuses_to_start_naming_the_variable_field_and_reason()
    {
        var dir = Directory.CreateTempSubdirectory("meshproxy-proxy-config-").FullName;
        try
        {
            var config = Path.Combine(dir, "sidecar.yaml");
            await File.WriteAllTextAsync(config, """
                apiVersion: meshproxy.io/v1alpha1
                kind: Sidecar
                metadata: { name: web, namespace: shop }
                spec:
                  app: { port: 8080 }
                  listeners: { outbound: 0, inbound: 0, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
                """, Ct);
            var bad = await Run.ProcessAsync("env", [$"{SidecarOverride.EnvironmentVariable}={{\"drainDuration\":\"soon\"}}", "dotnet", RepoPaths.Bin("meshproxy-sidecar"), "--config", config]);
            Assert.Equal(1, bad.Exit);
            Assert.Contains("MESHPROXY_PROXY_CONFIG:1: drainDuration: 'soon' is not a duration", bad.Stderr, StringComparison.Ordinal);

            // Valid alone, but its app port is the bootstrap's admin port once merged.
            await File.WriteAllTextAsync(config, (await File.ReadAllTextAsync(config, Ct)).Replace("admin: 0", "admin: 15300", StringComparison.Ordinal), Ct);
            var clash = await Run.ProcessAsync("env", [$"{SidecarOverride.EnvironmentVariable}={{\"app\":{{\"port\":15300}}}}", "dotnet", RepoPaths.Bin("meshproxy-sidecar"), "--config", config]);
            Assert.Equal(1, clash.Exit);
            Assert.Contains("MESHPROXY_PROXY_CONFIG:1: app: app.port 15300 collides with one of the sidecar's own listener ports", clash.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<bool> CanConnectAsync(int port)
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port, Ct);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
