using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MeshProxy.Injection.Tests.Infrastructure;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// Both halves of the probe rewrite together: the injector's rewritten probe and MESHPROXY_APP_PROBERS, handed to
/// the real sidecar process, probing a real HTTP server (python's http.server) the way the kubelet's probe would.
/// </summary>
public sealed partial class ProbeEndToEndTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_kubelet_following_the_rewritten_probes_gets_the_apps_answers_from_the_sidecar()
    {
        // The app binds port 0 and says which port it got; the pod spec names that port.
        var dir = Directory.CreateTempSubdirectory("meshproxy-probes-").FullName;
        await using var app = ExternalProcess.Start("python3", ["-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, "0"]);
        var appPort = int.Parse(HttpServerPort().Match(await app.WaitForLineAsync("Serving HTTP on", TimeSpan.FromSeconds(30))).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var pod = JsonNode.Parse($$"""
            {
              "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web-0" },
              "spec": { "containers": [ {
                "name": "web", "image": "python:3",
                "ports": [ { "name": "http", "containerPort": {{appPort}} } ],
                "livenessProbe": { "httpGet": { "path": "/", "port": "http" }, "timeoutSeconds": 10 },
                "readinessProbe": { "httpGet": { "path": "/not-there", "port": "http" }, "timeoutSeconds": 10 },
                "startupProbe": { "tcpSocket": { "port": "http" }, "timeoutSeconds": 10 }
              } ] }
            }
            """)!.AsObject();
        var (spec, probers) = Inject(pod);
        var web = spec["containers"]![0]!;

        try
        {
            var config = Path.Combine(dir, "sidecar.yaml");
            await File.WriteAllTextAsync(config, $$"""
                apiVersion: meshproxy.io/v1alpha1
                kind: Sidecar
                metadata: { name: web, namespace: shop }
                spec:
                  workload: { serviceAccount: web }
                  app: { port: {{appPort}}, protocol: HTTP }
                  listeners: { outbound: 0, inbound: 0, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
                """, Ct);
            await using var proxy = ExternalProcess.Start("env", [$"MESHPROXY_APP_PROBERS={probers}", "dotnet", RepoPaths.Bin("meshproxy-sidecar"), "--config", config]);
            var stats = StatsAddress().Match(await proxy.WaitForLineAsync("stats listener on", TimeSpan.FromSeconds(30))).Groups[1].Value;
            using var kubelet = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };

            // What the kubelet would do with each rewritten probe: GET its path on the stats port.
            async Task<HttpStatusCode> Probe(string field)
            {
                var httpGet = web[field]!["httpGet"]!;
                Assert.Equal(SidecarInjector.StatsPort, httpGet["port"]!.GetValue<int>());
                using var response = await kubelet.GetAsync($"http://{stats}{httpGet["path"]!.GetValue<string>()}", Ct);
                return response.StatusCode;
            }

            Assert.Equal(HttpStatusCode.OK, await Probe("livenessProbe"));
            Assert.Equal(HttpStatusCode.NotFound, await Probe("readinessProbe")); // the app's own 404 comes back: a failure to the kubelet
            Assert.Equal(HttpStatusCode.OK, await Probe("startupProbe"));

            await app.DisposeAsync();
            Assert.Equal(HttpStatusCode.InternalServerError, await Probe("livenessProbe"));
            Assert.Equal(HttpStatusCode.InternalServerError, await Probe("startupProbe"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task The_kubelet_following_rewritten_grpc_probes_gets_the_apps_grpc_health_from_the_sidecar()
    {
        // The grpc-js health server: SERVING for the server, NOT_SERVING for billing.v1.Billing, no answer for "hang".
        // It binds port 0 and prints {"port":N}; the pod spec names that port. The probes that must pass get 10 s, not the
        // kubelet's default 1 s: the sidecar's first gRPC call (a fresh channel, JIT) can take longer on a loaded machine.
        await using var app = ExternalProcess.Node("grpc-health-server.js");
        var appPort = System.Text.Json.JsonDocument.Parse(await app.WaitForLineAsync("\"port\"", TimeSpan.FromSeconds(30))).RootElement.GetProperty("port").GetInt32();
        var pod = JsonNode.Parse($$"""
            {
              "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "ledger-0" },
              "spec": { "containers": [ {
                "name": "ledger", "image": "registry.example/ledger:1",
                "ports": [ { "name": "grpc", "containerPort": {{appPort}} } ],
                "livenessProbe": { "grpc": { "port": {{appPort}} }, "timeoutSeconds": 10 },
                "readinessProbe": { "grpc": { "port": {{appPort}}, "service": "billing.v1.Billing" }, "timeoutSeconds": 10 },
                "startupProbe": { "grpc": { "port": {{appPort}}, "service": "hang" }, "timeoutSeconds": 1 }
              } ] }
            }
            """)!.AsObject();
        var (spec, probers) = Inject(pod);
        var ledger = spec["containers"]![0]!;

        var dir = Directory.CreateTempSubdirectory("meshproxy-probes-").FullName;
        try
        {
            var config = Path.Combine(dir, "sidecar.yaml");
            await File.WriteAllTextAsync(config, $$"""
                apiVersion: meshproxy.io/v1alpha1
                kind: Sidecar
                metadata: { name: ledger, namespace: shop }
                spec:
                  workload: { serviceAccount: ledger }
                  app: { port: {{appPort}}, protocol: GRPC }
                  listeners: { outbound: 0, inbound: 0, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
                """, Ct);
            await using var proxy = ExternalProcess.Start("env", [$"MESHPROXY_APP_PROBERS={probers}", "dotnet", RepoPaths.Bin("meshproxy-sidecar"), "--config", config]);
            var stats = StatsAddress().Match(await proxy.WaitForLineAsync("stats listener on", TimeSpan.FromSeconds(30))).Groups[1].Value;
            using var kubelet = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };

            async Task<HttpStatusCode> Probe(string field)
            {
                var httpGet = ledger[field]!["httpGet"]!;
                Assert.Equal(SidecarInjector.StatsPort, httpGet["port"]!.GetValue<int>());
                using var response = await kubelet.GetAsync($"http://{stats}{httpGet["path"]!.GetValue<string>()}", Ct);
                return response.StatusCode;
            }

            Assert.Equal(HttpStatusCode.OK, await Probe("livenessProbe"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, await Probe("readinessProbe"));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, await Probe("startupProbe")); // the probe's own 1 s timeout

            await app.DisposeAsync();
            Assert.Equal(HttpStatusCode.ServiceUnavailable, await Probe("livenessProbe"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [GeneratedRegex(@"listener on (\S+)")]
    private static partial Regex StatsAddress();

    [GeneratedRegex(@"Serving HTTP on \S+ port (\d+)")]
    private static partial Regex HttpServerPort();

    /// <summary>The pod as the injector returns it, and the app probes it hands the sidecar.</summary>
    private static (JsonNode Spec, string Probers) Inject(JsonObject pod)
    {
        var spec = new SidecarInjector(InjectionGoldenTests.Options).Inject(pod, new InjectionTarget("shop")).Pod["spec"]!;
        var sidecar = spec["initContainers"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == SidecarInjector.SidecarContainerName)!;
        return (spec, sidecar["env"]!.AsArray().Single(e => e!["name"]!.GetValue<string>() == "MESHPROXY_APP_PROBERS")!["value"]!.GetValue<string>());
    }
}
