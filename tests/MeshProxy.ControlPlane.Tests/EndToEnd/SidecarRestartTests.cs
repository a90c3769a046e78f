using System.Diagnostics;
using System.Net;
using System.Text.Json;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Tests.Certificates;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Identity;
using MeshProxy.Identity.Bootstrap;
using MeshProxy.Samples.App;
using MeshProxy.Sidecar.Configuration;
using MeshProxy.Sidecar.Forwarding;
using MeshProxy.Sidecar.Resilience;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// What a sidecar restarted while the control plane is away still has (issue 14, findings 2 and 3): the whole
/// saved snapshot, egress included, and its certificate, so that it serves mTLS at once; and that renewal and
/// ACKs resume when the control plane returns.
/// </summary>
public sealed class SidecarRestartTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// The snapshot a sidecar restores from its saved copy, compared with the one it was pushed over every field
    /// of the model (reflection, so a field added later is compared too). Only the flags that say where it came
    /// from, and live counters and connection pools (which belong to the process, not the configuration), differ.
    /// </summary>
    [Fact]
    public async Task A_snapshot_restored_after_a_restart_is_field_by_field_the_one_that_was_pushed()
    {
        var work = RepoPaths.NewTempDirectory();
        var config = Path.Combine(work, "config");
        Directory.CreateDirectory(config);
        Yaml.Write(config, "mesh.yaml", Everything(externalPort: 18443, apiPort: 18444));
        SidecarSnapshot original;
        string bootstrap;
        await using (var cp = await TestControlPlane.StartAsync(config))
        {
            bootstrap = InProcessSidecar.WriteBootstrap(work, "web", "shop", cp.GrpcUri.ToString());
            await using var first = await InProcessSidecar.StartAsync(bootstrap);
            await TestControlPlane.EventuallyAsync(() => Task.FromResult(first.Store.HasSnapshot && File.Exists(first.Source.SnapshotPath)), "the first snapshot, saved");
            original = first.Store.Current;
            Assert.False(original.Stale);
            Assert.Equal(1, original.Egress.PolicyCount);
        }

        // The control plane is gone: the new sidecar starts from the saved copy.
        await using var restarted = await InProcessSidecar.StartAsync(bootstrap);
        var restored = restarted.Store.Current;
        Assert.True(restored.Stale);

        var graph = new ObjectGraph(
            new HashSet<Type> { typeof(ClusterState), typeof(Sidecar.LoadBalancing.EndpointHealth), typeof(ClusterPool) },
            new HashSet<string> { "snapshot._stale", "snapshot.AppliedAt", "snapshot.Source" });
        var differences = graph.Differences(original, restored, "snapshot");
        Assert.True(differences.Count == 0, "the restored snapshot differs:\n" + string.Join('\n', differences));

        // The comparison can fail: the same resources without the EgressPolicy differ in the egress rules.
        var withoutEgress = SnapshotBuilder.Build(
            new ParseResult(original.Resources.Where(r => r is not EgressPolicyResource).ToList(), [], []), original.Version, original.Source, original.AppliedAt);
        Assert.Contains(graph.Differences(original, withoutEgress, "snapshot"), d => d.StartsWith("snapshot.Egress.", StringComparison.Ordinal));
    }

    /// <summary>
    /// Real processes: the control plane and two sidecars (web calls api over mTLS, and reaches an external host
    /// through an EgressPolicy). The control plane is killed, both sidecars are killed and started again: api
    /// serves mTLS within a second of its listeners opening, /ready is 200, web's egress still works. Then the
    /// control plane returns: both ACK its push and api renews the certificate it restarted with (which the test
    /// wrote past its renewal time, as a sidecar that restarts late in its certificate's life would have).
    /// </summary>
    [Fact]
    public async Task Restarted_while_the_control_plane_is_down_a_sidecar_serves_mtls_and_egress_at_once_and_renews_when_it_returns()
    {
        var work = RepoPaths.NewTempDirectory();
        var config = Path.Combine(work, "config");
        Directory.CreateDirectory(config);
        var caDir = Path.Combine(work, "ca");
        var tokens = Path.Combine(work, "tokens.json");
        var caOptions = new CertificateAuthorityOptions { TrustDomain = CaTestKit.TrustDomain };

        // A root from two days ago, so the test can issue api a certificate that is still valid but past half-life.
        CertificateAuthority.LoadOrCreate(caDir, caOptions, new ShiftedClock(TimeSpan.FromDays(-2))).Dispose();
        var store = LocalTokenStore.Open(tokens);
        await File.WriteAllTextAsync(Path.Combine(work, "api.token"), store.CreateToken("shop", "api") + "\n", Ct);
        await File.WriteAllTextAsync(Path.Combine(work, "web.token"), store.CreateToken("shop", "web") + "\n", Ct);

        await using var app = SampleApp.Build("api-app", 0, null, quiet: true);
        await app.StartAsync(Ct);
        await using var external = SampleApp.Build("external", 0, null, quiet: true);
        await external.StartAsync(Ct);

        // Every port a restart must take back is reserved for the whole test (see PortReservation): the control plane's
        // gRPC port (the bootstraps name it) and each sidecar's listeners (the pushed Service names api's inbound port).
        using var grpc = new PortReservation();
        var grpcPort = grpc.Port;
        using var api = new SidecarPorts("api");
        using var web = new SidecarPorts("web");
        Yaml.Write(config, "mesh.yaml", Everything(external.BoundPort(), api.Inbound));
        var apiBootstrap = api.WriteBootstrap(work, app.BoundPort(), $"http://127.0.0.1:{grpcPort}");
        var webBootstrap = web.WriteBootstrap(work, 18080, $"http://127.0.0.1:{grpcPort}");

        var controlPlane = await StartControlPlaneAsync(config, caDir, tokens, grpcPort);
        var apiProcess = await StartSidecarAsync(apiBootstrap, api);
        var webProcess = await StartSidecarAsync(webBootstrap, web);
        try
        {
            await EventuallyAsync(async () => await ReadyAsync(api) && await ReadyAsync(web), "both sidecars ready", TimeSpan.FromSeconds(60));
            Assert.Equal(HttpStatusCode.OK, (await CallApiAsync(web)).Status);
            Assert.Equal(HttpStatusCode.OK, (await CallExternalAsync(web, external.BoundPort())).Status);

            // What each sidecar saved: the snapshot and, beside it, its certificate with an owner-only key.
            var apiFiles = new SvidFiles(apiBootstrap + ".snapshot");
            var webFiles = new SvidFiles(webBootstrap + ".snapshot");
            await EventuallyAsync(() => Task.FromResult(File.Exists(apiFiles.KeyPath) && File.Exists(webFiles.KeyPath) && File.Exists(webBootstrap + ".snapshot")), "certificates saved");
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(webFiles.KeyPath));
            }

            var webSerial = await SerialAsync(web);

            // api's saved certificate replaced by one 23 h 55 min into its 24 h: valid, but due for renewal.
            var apiId = SpiffeId.Parse(CaTestKit.SpiffeId("shop", "api"));
            string lateSerial;
            using (var ca = CertificateAuthority.LoadOrCreate(caDir, caOptions, new ShiftedClock(TimeSpan.FromHours(-23.9))))
            using (var key = WorkloadKey.Create())
            {
                var issued = ca.Sign(key.CreateSigningRequestPem(apiId), apiId);
                var late = X509Svid.Create(key, issued.CertificateChainPem, apiId);
                apiFiles.Save(late, TrustBundle.FromPem(issued.TrustBundlePem));
                lateSerial = late.Certificate.SerialNumber;
            }

            // The outage: the control plane dies, then both sidecars die and come back.
            await controlPlane.DisposeAsync();
            await webProcess.DisposeAsync();
            await apiProcess.DisposeAsync();
            webProcess = await StartSidecarAsync(webBootstrap, web);
            var launched = Stopwatch.StartNew();
            apiProcess = await StartSidecarAsync(apiBootstrap, api);
            var listening = launched.Elapsed;

            // web -> api over mTLS: the first call succeeds within a second of api's listeners opening.
            var (started, answered, failed) = await FirstSuccessAsync(() => CallApiAsync(web), TimeSpan.FromSeconds(1));
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"api restarted: listeners {listening.TotalMilliseconds:F0} ms after launch; then {failed} failed call(s), and the first successful one started at {started.TotalMilliseconds:F0} ms and was answered at {answered.TotalMilliseconds:F0} ms");
            var (status, body) = await CallApiAsync(web);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Contains("URI=" + CaTestKit.SpiffeId("shop", "web"), JsonDocument.Parse(body).RootElement.GetProperty("clientCert").GetString());
            Assert.True(await ReadyAsync(api), "api /ready after the restart");
            Assert.True(await ReadyAsync(web), "web /ready after the restart");
            Assert.Equal(lateSerial, await SerialAsync(api));
            Assert.Equal(webSerial, await SerialAsync(web));

            // Egress after the restart: the EgressPolicy of the saved snapshot still lets web out.
            var egress = await CallExternalAsync(web, external.BoundPort());
            Assert.True(egress.Status == HttpStatusCode.OK, $"egress after the restart: {(int)egress.Status} {egress.Body}");
            Assert.Contains("\"external\"", egress.Body, StringComparison.Ordinal);

            // The control plane returns: both sidecars ACK its push, and api renews the certificate that was due.
            await using var back = await StartControlPlaneAsync(config, caDir, tokens, grpcPort);
            controlPlane = back;
            await EventuallyAsync(async () => await SerialAsync(api) != lateSerial, "api renewed its certificate", TimeSpan.FromSeconds(60));
            await EventuallyAsync(async () => await StaleAsync(api) == 0 && await StaleAsync(web) == 0, "both sidecars on a pushed snapshot", TimeSpan.FromSeconds(60));
            Assert.Equal(webSerial, await SerialAsync(web)); // not due: not renewed
            Assert.Equal(HttpStatusCode.OK, (await CallApiAsync(web)).Status);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw new InvalidOperationException(
                $"{ex.Message}\n--- api:\n{Tail(apiProcess)}\n--- web:\n{Tail(webProcess)}\n--- control plane:\n{Tail(controlPlane)}", ex);
        }
        finally
        {
            await apiProcess.DisposeAsync();
            await webProcess.DisposeAsync();
            await controlPlane.DisposeAsync();
        }
    }

    /// <summary>One resource of every kind a snapshot compiles (web is the workload; api a mesh service; localhost:externalPort allowed out).</summary>
    private static string Everything(int externalPort, int apiPort) => Yaml.Docs(
        CaTestKit.MeshYaml() + "\n",
        $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: Service
        metadata: { name: api, namespace: shop }
        spec:
          ports: [{ port: 80, protocol: HTTP }]
          endpoints: [{ address: 127.0.0.1, port: {{apiPort}}, serviceAccount: api }]

        """,
        Yaml.Service("billing", "shop", 80, 19001, 19002),
        Yaml.Route("billing-route", "shop", "billing", "billing"),
        """
        apiVersion: meshproxy.io/v1alpha1
        kind: DestinationPolicy
        metadata: { name: billing, namespace: shop }
        spec:
          host: billing
          outlierDetection: { consecutive5xxErrors: 3 }

        """,
        $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: { name: callers, namespace: shop }
        spec:
          action: ALLOW
          rules:
            - from: [{ source: { principals: ["{{CaTestKit.SpiffeId("shop", "web")}}"] } }]

        """,
        $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: EgressPolicy
        metadata: { name: external, namespace: shop }
        spec:
          hosts: [localhost]
          ports: [{ number: {{externalPort}}, protocol: HTTP }]

        """);

    /// <summary>The control plane as a process: gRPC on <paramref name="grpcPort"/>, monitoring on a port it picks and logs.</summary>
    private static async Task<ExternalProcess> StartControlPlaneAsync(string config, string caDir, string tokens, int grpcPort)
    {
        var process = ExternalProcess.Start(
            "dotnet",
            [Path.Combine(AppContext.BaseDirectory, "meshproxy-controlplane.dll"), "--config-dir", config, "--grpc", $"127.0.0.1:{grpcPort}",
             "--monitoring", "127.0.0.1:0", "--ca-dir", caDir, "--token-store", tokens],
            new Dictionary<string, string> { ["Logging__Console__FormatterName"] = "simple" });
        var listening = await process.WaitForLineAsync("Control plane listening", TimeSpan.FromSeconds(60));
        var monitoring = listening[(listening.IndexOf("monitoring on ", StringComparison.Ordinal) + "monitoring on ".Length)..].Split(',')[0];
        await EventuallyAsync(async () => await StatusAsync(new Uri($"http://{monitoring}/ready")) == HttpStatusCode.OK, "the control plane ready", TimeSpan.FromSeconds(60), process);
        return process;
    }

    private static async Task<ExternalProcess> StartSidecarAsync(string bootstrap, SidecarPorts ports)
    {
        var command = RepoPaths.Sidecar("--config", bootstrap);
        var process = ExternalProcess.Start(command[0], command[1..], new Dictionary<string, string> { ["Logging__Console__FormatterName"] = "simple" });
        await process.WaitForLineAsync($"inbound listener on 127.0.0.1:{ports.Inbound}", TimeSpan.FromSeconds(60));
        await process.WaitForLineAsync($"outbound listener on 127.0.0.1:{ports.Outbound}", TimeSpan.FromSeconds(60));
        return process;
    }

    private static Task<(HttpStatusCode Status, string Body)> CallApiAsync(SidecarPorts caller) => SendAsync(caller, "api.shop", "/hello");

    private static Task<(HttpStatusCode Status, string Body)> CallExternalAsync(SidecarPorts caller, int port) => SendAsync(caller, $"localhost:{port}", "/hello");

    private static async Task<(HttpStatusCode Status, string Body)> SendAsync(SidecarPorts caller, string host, string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri($"http://127.0.0.1:{caller.Outbound}{path}"));
        request.Headers.Host = host;
        using var response = await Http.SendAsync(request, Ct);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(Ct));
    }

    private static async Task<bool> ReadyAsync(SidecarPorts sidecar) => await StatusAsync(new Uri($"http://127.0.0.1:{sidecar.Stats}/ready")) == HttpStatusCode.OK;

    private static async Task<string?> SerialAsync(SidecarPorts sidecar)
    {
        var certs = JsonDocument.Parse(await Http.GetStringAsync(new Uri($"http://127.0.0.1:{sidecar.Admin}/certs"), Ct)).RootElement;
        return certs.TryGetProperty("chain", out var chain) && chain.GetArrayLength() > 0 ? chain[0].GetProperty("serialNumber").GetString() : null;
    }

    private static async Task<double> StaleAsync(SidecarPorts sidecar)
    {
        var metrics = await Http.GetStringAsync(new Uri($"http://127.0.0.1:{sidecar.Stats}/metrics"), Ct);
        var line = metrics.Split('\n').Single(l => l.StartsWith("meshproxy_config_stale ", StringComparison.Ordinal));
        return double.Parse(line["meshproxy_config_stale ".Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static async Task<HttpStatusCode?> StatusAsync(Uri uri)
    {
        try
        {
            using var response = await Http.GetAsync(uri, Ct);
            return response.StatusCode;
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>
    /// Calls until one answers 200; fails unless a call made within <paramref name="limit"/> does. Returns when that
    /// call was made and answered, and how many failed before it (a fresh process's first request pays for JIT, so
    /// on a loaded machine the answer may come after the limit; the question is whether the sidecar serves yet).
    /// </summary>
    private static async Task<(TimeSpan Started, TimeSpan Answered, int Failed)> FirstSuccessAsync(Func<Task<(HttpStatusCode Status, string Body)>> call, TimeSpan limit)
    {
        var watch = Stopwatch.StartNew();
        var last = "no call made";
        var failed = 0;
        while (watch.Elapsed < limit)
        {
            var started = watch.Elapsed;
            try
            {
                var (status, body) = await call();
                if (status == HttpStatusCode.OK)
                {
                    return (started, watch.Elapsed, failed);
                }

                last = $"{(int)status} {body.Trim()}";
            }
            catch (HttpRequestException ex)
            {
                last = ex.Message;
            }

            failed++;
            await Task.Delay(20, Ct);
        }

        Assert.Fail($"no call made within {limit.TotalMilliseconds} ms succeeded ({failed} failed); the last: {last}");
        return default;
    }

    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null, ExternalProcess? process = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            if (process is { HasExited: true })
            {
                break;
            }

            await Task.Delay(100, Ct);
        }

        Assert.Fail($"timed out waiting for: {what}" + (process is null ? string.Empty : $"\n{process.Output}"));
    }

    private static string Tail(ExternalProcess process)
    {
        var lines = process.Output.Split('\n');
        return string.Join('\n', lines.TakeLast(40));
    }

    /// <summary>The real clock moved by a fixed amount: for issuing certificates as if at another time.</summary>
    private sealed class ShiftedClock(TimeSpan by) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + by;
    }
}
