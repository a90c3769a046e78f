using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Grpc.Net.Client;
using MeshProxy.Api.V1;

// Usage: dotnet run -c Release --project benchmarks/controlplane-scale -- [sidecars=1000] [workloads=100] [services=50] [settle-seconds=2]
//        ... -- live-heap [connections=1000] [services=50]   (where the memory goes: see LiveHeap.cs)
// SCALE_HOLD=<seconds> keeps the control plane up that long once every sidecar is connected, and prints its pid,
// so that a heap dump can be taken (dotnet-dump collect -p <pid>; RESULTS.md says what was found that way).
if (args.Length > 0 && args[0] == "live-heap")
{
    await LiveHeap.RunAsync(args.Length > 1 ? int.Parse(args[1]) : 1000, args.Length > 2 ? int.Parse(args[2]) : 50, (i, port) => Service(i, port) + "---\n" + Route(i, i));
    return 0;
}

var sidecars = args.Length > 0 ? int.Parse(args[0]) : 1000;
var workloads = args.Length > 1 ? int.Parse(args[1]) : 100;
var serviceCount = args.Length > 2 ? int.Parse(args[2]) : 50;
var settle = TimeSpan.FromSeconds(args.Length > 3 ? double.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 2);

var dir = Path.Combine(Path.GetTempPath(), "meshproxy-cp-scale", Guid.NewGuid().ToString("N"));
Directory.CreateDirectory(dir);
for (var i = 0; i < serviceCount; i++)
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
    var gcBefore = await GcAsync(http, monitoringPort);

    var address = new Uri($"http://127.0.0.1:{grpcPort}");
    var clients = new List<SimulatedSidecar>(sidecars);
    // A first tenth connects and gets its snapshot: the one-time costs (JIT of the HTTP/2 and gRPC paths, thread-pool
    // threads, the GC's gen0 budget) land before the second measurement, which the rest is measured against.
    var warm = sidecars / 10;
    long rssWarm = 0;
    (double Heap, double Committed, double Gen2) gcWarm = default;
    var connectWatch = Stopwatch.StartNew();
    for (var i = 0; i < sidecars; i++)
    {
        if (i == warm)
        {
            await Task.WhenAll(clients.Select(c => c.FirstAcked));
            await Task.Delay(settle);
            rssWarm = Rss(cp.Id);
            gcWarm = await GcAsync(http, monitoringPort);
        }

        clients.Add(SimulatedSidecar.Start(address, $"wl-{i % workloads:D3}", "bench", $"sc-{i:D4}"));
        if (i % 100 == 99)
        {
            await Task.Delay(20); // do not open 1000 connections in one burst: the accept queue is 512
        }
    }

    await Task.WhenAll(clients.Select(c => c.FirstAcked));
    Console.WriteLine($"{sidecars} sidecars connected and ACKed their first snapshot in {connectWatch.Elapsed.TotalSeconds:F2} s");
    await Task.Delay(settle);
    var rssConnected = Rss(cp.Id);
    if (Environment.GetEnvironmentVariable("SCALE_HOLD") is { } hold)
    {
        Console.WriteLine($"holding: control plane pid {cp.Id}");
        await Task.Delay(TimeSpan.FromSeconds(int.Parse(hold)));
    }
    var gcConnected = await GcAsync(http, monitoringPort);

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
    Console.WriteLine($"resource change -> ACK sent, over {sidecars} sidecars ({workloads} workloads, {serviceCount} services + routes):");
    Console.WriteLine($"  p50 {P(0.50):F0} ms   p99 {P(0.99):F0} ms   max {latencies[^1]:F0} ms   (includes the 100 ms debounce)");
    Console.WriteLine($"control plane RSS: {rssBefore / 1024.0 / 1024:F1} MiB idle -> {rssConnected / 1024.0 / 1024:F1} MiB with {sidecars} streams");
    Console.WriteLine($"  per sidecar: {(rssConnected - rssBefore) / 1024.0 / sidecars:F1} KiB (one-time costs included)");
    Console.WriteLine($"  marginal, {warm} -> {sidecars} streams: RSS {rssWarm / 1024.0 / 1024:F1} -> {rssConnected / 1024.0 / 1024:F1} MiB, {(rssConnected - rssWarm) / 1024.0 / (sidecars - warm):F1} KiB per sidecar; managed heap at the last GC {(gcConnected.Heap - gcWarm.Heap) / 1024.0 / (sidecars - warm):F1} KiB per sidecar");
    Console.WriteLine($"  managed heap at the last GC: {gcBefore.Heap / 1024.0 / 1024:F1} -> {gcConnected.Heap / 1024.0 / 1024:F1} MiB ({(gcConnected.Heap - gcBefore.Heap) / 1024.0 / sidecars:F1} KiB per sidecar); GC committed {gcBefore.Committed / 1024.0 / 1024:F1} -> {gcConnected.Committed / 1024.0 / 1024:F1} MiB; gen2 collections {gcBefore.Gen2} -> {gcConnected.Gen2}");
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

// The control plane's own view of its heap, from its /metrics (dotnet_gc_*): at the last collection, and committed.
static async Task<(double Heap, double Committed, double Gen2)> GcAsync(HttpClient http, int port)
{
    var metrics = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
    double Value(string series) => metrics.Split('\n').Where(l => l.StartsWith(series + " ", StringComparison.Ordinal))
        .Select(l => double.Parse(l[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture)).FirstOrDefault();
    return (Value("dotnet_gc_heap_size_bytes"), Value("dotnet_gc_committed_bytes"), Value("dotnet_gc_collections_total{generation=\"2\"}"));
}

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
    private readonly GrpcChannel _channel;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _change = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _changedAt;
    private Task _loop = Task.CompletedTask;

    // A channel each, as each real sidecar has: its own HTTP/2 connection.
    private SimulatedSidecar(Uri address) => _channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = new SocketsHttpHandler(), DisposeHttpClient = true });

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
            using var call = new ConfigDiscovery.ConfigDiscoveryClient(_channel).StreamSnapshots(cancellationToken: _stop.Token);
            await call.RequestStream.WriteAsync(new SnapshotRequest { Node = node });
            while (await call.ResponseStream.MoveNext(_stop.Token))
            {
                var snapshot = call.ResponseStream.Current;
                await call.RequestStream.WriteAsync(new SnapshotRequest { VersionInfo = snapshot.VersionInfo, ResponseNonce = snapshot.Nonce });
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
        _channel.Dispose();
        _stop.Dispose();
    }
}
