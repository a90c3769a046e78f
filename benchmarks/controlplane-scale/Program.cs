using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using MeshProxy.Api.V1;

// Usage: dotnet run -c Release --project benchmarks/controlplane-scale -- [sidecars=1000] [workloads=100] [services=50] [settle-seconds=2]
//        ... -- live-heap [connections=1000] [services=50]   (where the memory goes: see LiveHeap.cs)
//        ... -- kubernetes [scoped|unscoped]   (the Kubernetes source at cluster scale: see KubernetesScale.cs)
// SCALE_HOLD=<seconds> keeps the control plane up that long once every sidecar is connected, and prints its pid,
// so that a heap dump can be taken (dotnet-dump collect -p <pid>; RESULTS.md says what was found that way).
if (args.Length > 0 && args[0] == "kubernetes")
{
    return await KubernetesScale.RunAsync(args[1..]);
}

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

var grpcPort = Measure.FreePort();
var monitoringPort = Measure.FreePort();
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
    await Measure.WaitAsync(async () => (await http.GetAsync($"http://127.0.0.1:{monitoringPort}/ready")).IsSuccessStatusCode);
    await Task.Delay(1000);
    var rssBefore = Measure.Rss(cp.Id);
    var gcBefore = await Measure.GcAsync(http, monitoringPort);

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
            rssWarm = Measure.Rss(cp.Id);
            gcWarm = await Measure.GcAsync(http, monitoringPort);
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
    var rssConnected = Measure.Rss(cp.Id);
    if (Environment.GetEnvironmentVariable("SCALE_HOLD") is { } hold)
    {
        Console.WriteLine($"holding: control plane pid {cp.Id}");
        await Task.Delay(TimeSpan.FromSeconds(int.Parse(hold)));
    }
    var gcConnected = await Measure.GcAsync(http, monitoringPort);

    // The change: one route now splits to another service; every sidecar can reach it, so all are affected.
    var changedAt = Stopwatch.GetTimestamp();
    var acked = clients.Select(c => c.Arm(changedAt)).ToList();

    var temp = Path.Combine(dir, ".svc-00.tmp");
    File.WriteAllText(temp, Service(0, 9000) + "---\n" + Route(0, 1));
    File.Move(temp, Path.Combine(dir, "svc-00.yaml"), overwrite: true);
    var latencies = (await Task.WhenAll(acked).WaitAsync(TimeSpan.FromSeconds(60))).Select(t => t.TotalMilliseconds).Order().ToArray();
    await Measure.WaitAsync(async () =>
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

/// <summary>
/// One sidecar's side of StreamSnapshots over its own HTTP/2 connection, from its own source address when given
/// (a pod's IP: the Kubernetes source checks that a sidecar connects from its pod): ACKs everything, and counts
/// the pushes and bytes it received.
/// </summary>
internal sealed class SimulatedSidecar : IAsyncDisposable
{
    private readonly GrpcChannel _channel;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Waiter? _waiter;
    private long _pushes;
    private long _bytes;
    private long _retries;
    private Metadata? _headers;
    private Task _loop = Task.CompletedTask;

    // A channel each, as each real sidecar has: its own HTTP/2 connection.
    private SimulatedSidecar(Uri address, IPAddress? local)
    {
        var handler = new SocketsHttpHandler();
        if (local is not null)
        {
            handler.ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new Socket(local.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    socket.Bind(new IPEndPoint(local, 0));
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
        }

        _channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }

    public Task FirstAcked => _first.Task;

    public long Pushes => Interlocked.Read(ref _pushes);

    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>Streams refused with UNAVAILABLE and tried again.</summary>
    public long Retries => Interlocked.Read(ref _retries);

    /// <param name="token">The pod's service-account token, sent as a bearer credential: the Kubernetes source's config stream
    /// serves only the workload the reviewed token proves.</param>
    public static SimulatedSidecar Start(Uri address, string workload, string ns, string id, IPAddress? local = null, string? serviceAccount = null, string? token = null)
    {
        var s = new SimulatedSidecar(address, local) { _headers = token is null ? null : new Metadata { { "authorization", "Bearer " + token } } };
        s._loop = s.RunAsync(new Node { Workload = workload, Namespace = ns, ServiceAccount = serviceAccount ?? workload, InstanceId = id });
        return s;
    }

    /// <summary>
    /// Completes with the time from <paramref name="timestamp"/> until this sidecar ACKed the first snapshot that
    /// <paramref name="matches"/> (any snapshot when null): what one change cost until this sidecar applied it.
    /// </summary>
    public Task<TimeSpan> Arm(long timestamp, Func<Snapshot, bool>? matches = null)
    {
        var waiter = new Waiter(timestamp, matches ?? (_ => true));
        Volatile.Write(ref _waiter, waiter);
        return waiter.Acked.Task;
    }

    private async Task RunAsync(Node node)
    {
        // A new pod's sidecar can be quicker than the control plane's informer: UNAVAILABLE ("pod not known yet") is
        // retried, as the real sidecar does (it backs off from 200 ms; here a fixed 200 ms).
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await StreamAsync(node);
                return;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && attempt < 50 && !_stop.IsCancellationRequested)
            {
                Interlocked.Increment(ref _retries);
                await Task.Delay(200);
            }
            catch (Exception ex) when (!_stop.IsCancellationRequested)
            {
                _first.TrySetException(ex);
                Volatile.Read(ref _waiter)?.Acked.TrySetException(ex);
                return;
            }
            catch (Exception)
            {
                return;
            }
        }
    }

    private async Task StreamAsync(Node node)
    {
        using var call = new ConfigDiscovery.ConfigDiscoveryClient(_channel).StreamSnapshots(_headers, cancellationToken: _stop.Token);
        await call.RequestStream.WriteAsync(new SnapshotRequest { Node = node });
        while (await call.ResponseStream.MoveNext(_stop.Token))
        {
            var snapshot = call.ResponseStream.Current;
            Interlocked.Increment(ref _pushes);
            Interlocked.Add(ref _bytes, snapshot.CalculateSize());
            await call.RequestStream.WriteAsync(new SnapshotRequest { VersionInfo = snapshot.VersionInfo, ResponseNonce = snapshot.Nonce });
            _first.TrySetResult();
            if (Volatile.Read(ref _waiter) is { } waiter && waiter.Matches(snapshot))
            {
                waiter.Acked.TrySetResult(Stopwatch.GetElapsedTime(waiter.Since));
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _channel.Dispose();
        _stop.Dispose();
    }

    private sealed class Waiter(long since, Func<Snapshot, bool> matches)
    {
        public long Since { get; } = since;

        public Func<Snapshot, bool> Matches { get; } = matches;

        public TaskCompletionSource<TimeSpan> Acked { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
