using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using MeshProxy.Api.V1;
using MeshProxy.Grpc.Client;

// Usage: dotnet run -c Release --project benchmarks/controlplane-scale -- [sidecars=1000] [workloads=100]
var sidecars = args.Length > 0 ? int.Parse(args[0]) : 1000;
var workloads = args.Length > 1 ? int.Parse(args[1]) : 100;
const int Services = 50;

var dir = Path.Combine(Path.GetTempPath(), "meshproxy-cp-scale", Guid.NewGuid().ToString("N"));
Directory.CreateDirectory(dir);
for (var i = 0; i < Services; i++)
{
    File.WriteAllText(Path.Combine(dir, $"svc-{i:D2}.yaml"), Service(i, 9000 + i) + "---\n" + Route(i, i));
}

var grpcPort = FreePort();
var monitoringPort = FreePort();
var cpDll = Path.Combine(AppContext.BaseDirectory, "meshproxy-controlplane.dll");
var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
foreach (var a in new[] { cpDll, "--config-dir", dir, "--grpc", $"127.0.0.1:{grpcPort}", "--monitoring", $"127.0.0.1:{monitoringPort}" })
{
    info.ArgumentList.Add(a);
}

info.Environment["Logging__LogLevel__Default"] = "Warning";
using var cp = Process.Start(info)!;
cp.OutputDataReceived += (_, _) => { };
cp.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"[cp] {e.Data}"); };
cp.BeginOutputReadLine();
cp.BeginErrorReadLine();
try
{
    using var http = new HttpClient();
    await WaitAsync(async () => (await http.GetAsync($"http://127.0.0.1:{monitoringPort}/ready")).IsSuccessStatusCode);
    await Task.Delay(1000);
    var rssBefore = Rss(cp.Id);

    var address = new Uri($"http://127.0.0.1:{grpcPort}");
    var clients = new List<SimulatedSidecar>(sidecars);
    var connectWatch = Stopwatch.StartNew();
    for (var i = 0; i < sidecars; i++)
    {
        clients.Add(SimulatedSidecar.Start(address, $"wl-{i % workloads:D3}", "bench", $"sc-{i:D4}"));
        if (i % 100 == 99)
        {
            await Task.Delay(20); // do not open 1000 connections in one burst: the accept queue is 512
        }
    }

    await Task.WhenAll(clients.Select(c => c.FirstAcked));
    Console.WriteLine($"{sidecars} sidecars connected and ACKed their first snapshot in {connectWatch.Elapsed.TotalSeconds:F2} s");
    await Task.Delay(2000);
    var rssConnected = Rss(cp.Id);

    // The change: one route now splits to another service; every sidecar can reach it, so all are affected.
    var changedAt = Stopwatch.GetTimestamp();
    foreach (var c in clients)
    {
        c.ArmForChange(changedAt);
    }

    var temp = Path.Combine(dir, ".svc-00.tmp");
    File.WriteAllText(temp, Service(0, 9000) + "---\n" + Route(0, 1));
    File.Move(temp, Path.Combine(dir, "svc-00.yaml"), overwrite: true);
    await Task.WhenAll(clients.Select(c => c.ChangeAcked)).WaitAsync(TimeSpan.FromSeconds(60));
    var latencies = clients.Select(c => c.ChangeLatency.TotalMilliseconds).Order().ToArray();
    await WaitAsync(async () =>
    {
        var syncz = await http.GetStringAsync($"http://127.0.0.1:{monitoringPort}/debug/syncz");
        return System.Text.Json.JsonDocument.Parse(syncz).RootElement.EnumerateArray().All(r => r.GetProperty("status").GetString() == "SYNCED");
    });

    double P(double q) => latencies[Math.Min(latencies.Length - 1, (int)Math.Ceiling(q * latencies.Length) - 1)];
    Console.WriteLine($"resource change -> ACK sent, over {sidecars} sidecars ({workloads} workloads, {Services} services + routes):");
    Console.WriteLine($"  p50 {P(0.50):F0} ms   p99 {P(0.99):F0} ms   max {latencies[^1]:F0} ms   (includes the 100 ms debounce)");
    Console.WriteLine($"control plane RSS: {rssBefore / 1024.0 / 1024:F1} MiB idle -> {rssConnected / 1024.0 / 1024:F1} MiB with {sidecars} streams");
    Console.WriteLine($"  per sidecar: {(rssConnected - rssBefore) / 1024.0 / sidecars:F1} KiB");
    var metrics = await http.GetStringAsync($"http://127.0.0.1:{monitoringPort}/metrics");
    foreach (var line in metrics.Split('\n'))
    {
        if (line.StartsWith("dotnet_gc_heap_size_bytes", StringComparison.Ordinal) || line.StartsWith("dotnet_gc_committed_bytes", StringComparison.Ordinal) ||
            line.StartsWith("meshproxy_controlplane_push_latency_seconds_sum", StringComparison.Ordinal) || line.StartsWith("meshproxy_controlplane_push_latency_seconds_count", StringComparison.Ordinal))
        {
            Console.WriteLine($"  cp {line}");
        }
    }

    foreach (var c in clients)
    {
        await c.DisposeAsync();
    }
}
finally
{
    cp.Kill(entireProcessTree: true);
    await cp.WaitForExitAsync();
    Directory.Delete(dir, recursive: true);
}

return 0;

static string Service(int i, int port) => $$"""
    apiVersion: meshproxy.io/v1alpha1
    kind: Service
    metadata: { name: svc-{{i:D2}}, namespace: bench }
    spec:
      ports: [{ port: 80, protocol: HTTP }]
      endpoints: [{ address: 10.0.{{i / 250}}.{{i % 250 + 1}}, port: {{port}} }, { address: 10.1.{{i / 250}}.{{i % 250 + 1}}, port: {{port}} }]

    """;

static string Route(int i, int target) => $$"""
    apiVersion: meshproxy.io/v1alpha1
    kind: HttpRoute
    metadata: { name: svc-{{i:D2}}, namespace: bench }
    spec:
      hosts: [svc-{{i:D2}}]
      http:
        - timeout: 5s
          route: [{ destination: { host: svc-{{target:D2}} } }]

    """;

static long Rss(int pid)
{
    foreach (var line in File.ReadLines($"/proc/{pid}/status"))
    {
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
        {
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
    }

    return 0;
}

static int FreePort()
{
    using var l = new TcpListener(IPAddress.Loopback, 0);
    l.Start();
    return ((IPEndPoint)l.LocalEndpoint).Port;
}

static async Task WaitAsync(Func<Task<bool>> condition)
{
    var deadline = DateTime.UtcNow.AddSeconds(60);
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

        await Task.Delay(100);
    }

    throw new TimeoutException("condition not met in 60 s");
}

/// <summary>One sidecar's side of StreamSnapshots over its own HTTP/2 connection: ACKs everything.</summary>
internal sealed class SimulatedSidecar : IAsyncDisposable
{
    private readonly GrpcClient _client;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _change = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _changedAt;
    private Task _loop = Task.CompletedTask;

    private SimulatedSidecar(Uri address) => _client = new GrpcClient(address);

    public Task FirstAcked => _first.Task;

    public Task ChangeAcked => _change.Task;

    public TimeSpan ChangeLatency { get; private set; }

    public static SimulatedSidecar Start(Uri address, string workload, string ns, string id)
    {
        var s = new SimulatedSidecar(address);
        s._loop = s.RunAsync(new Node { Workload = workload, Namespace = ns, ServiceAccount = workload, InstanceId = id });
        return s;
    }

    public void ArmForChange(long timestamp) => Volatile.Write(ref _changedAt, timestamp);

    private async Task RunAsync(Node node)
    {
        try
        {
            await using var call = _client.StartDuplex<SnapshotRequest, Snapshot>(ApiMethods.StreamSnapshots, Snapshot.Parser, new GrpcCallOptions { CancellationToken = _stop.Token });
            await call.WriteAsync(new SnapshotRequest { Node = node });
            while (await call.ReadAsync() is { } snapshot)
            {
                await call.WriteAsync(new SnapshotRequest { VersionInfo = snapshot.VersionInfo, ResponseNonce = snapshot.Nonce });
                var armed = Volatile.Read(ref _changedAt);
                if (armed == 0)
                {
                    _first.TrySetResult();
                }
                else
                {
                    ChangeLatency = Stopwatch.GetElapsedTime(armed);
                    _change.TrySetResult();
                }
            }
        }
        catch (Exception ex) when (!_stop.IsCancellationRequested)
        {
            _first.TrySetException(ex);
            _change.TrySetException(ex);
        }
        catch (Exception)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _client.Dispose();
        _stop.Dispose();
    }
}
