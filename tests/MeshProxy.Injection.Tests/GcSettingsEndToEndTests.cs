using System.Text.Json.Nodes;

namespace MeshProxy.Injection.Tests;

/// <summary>
/// The GC settings an injected pod's sidecar really runs with: the build's own (MeshProxy.Sidecar.csproj)
/// and the heap limit and gen0 budget the injector sets, read back from the start-up
/// log of the real process given the injected container's DOTNET_* environment. With
/// MESHPROXY_SIDECAR_BINARY (tests/run.sh sets it) that process is the published Native AOT build, whose
/// runtime silently ignores a value it cannot parse; otherwise the JIT build beside the tests.
/// </summary>
public sealed class GcSettingsEndToEndTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_sidecar_started_with_the_injectors_environment_runs_the_workstation_gc_within_the_heap_limit()
    {
        var appPort = ClosedPort.Next();
        var pod = JsonNode.Parse($$"""
            {
              "apiVersion": "v1", "kind": "Pod",
              "metadata": { "name": "web-0", "annotations": { "sidecar.meshproxy.io/proxyMemoryLimit": "128Mi" } },
              "spec": { "containers": [ { "name": "web", "image": "python:3", "ports": [ { "containerPort": {{appPort}} } ] } ] }
            }
            """)!.AsObject();
        var injected = new SidecarInjector(InjectionGoldenTests.Options).Inject(pod, new InjectionTarget("shop")).Pod;
        var sidecar = injected["spec"]!["initContainers"]!.AsArray().Single(c => c!["name"]!.GetValue<string>() == SidecarInjector.SidecarContainerName)!;
        Assert.Equal("128Mi", sidecar["resources"]!["limits"]!["memory"]!.GetValue<string>());
        var environment = sidecar["env"]!.AsArray()
            .Where(e => e!["name"]!.GetValue<string>().StartsWith("DOTNET_", StringComparison.Ordinal) && e["value"] is not null)
            .ToDictionary(e => e!["name"]!.GetValue<string>(), e => e!["value"]!.GetValue<string>());
        Assert.Contains("DOTNET_GCHeapHardLimit", environment.Keys);

        await using var proxy = await SidecarAsync(appPort, environment);
        var line = await proxy.Process.WaitForLineAsync("GC: ", TimeSpan.FromSeconds(30));

        // The build's choice, one heap (not the Web SDK's server GC), and the injector's concurrent GC beside the
        // heap limit: the non-concurrent GC crashes near a hard limit (dotnet/runtime#129681).
        Assert.Contains("GC: workstation, concurrent, heaps 1,", line, StringComparison.Ordinal);
        // 75 % (the injector's default share) of 128 MiB = 100663296 bytes.
        Assert.Contains("heap hard limit 100663296 bytes", line, StringComparison.Ordinal);
        // The injector's gen0 budget, 4 MiB.
        Assert.EndsWith("gen0 budget 4194304 bytes", line, StringComparison.Ordinal);
        await proxy.Process.WaitForLineAsync("inbound listener on", TimeSpan.FromSeconds(30));
        Assert.DoesNotContain(HardLimitWarning, proxy.Process.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_sidecar_given_a_heap_limit_without_the_concurrent_gc_warns_that_it_can_crash()
    {
        // What a hand-written deployment (docker run -e DOTNET_GCHeapHardLimit=...) gives it: the build's non-concurrent GC.
        await using var proxy = await SidecarAsync(ClosedPort.Next(), new Dictionary<string, string> { ["DOTNET_GCHeapHardLimit"] = "6000000" });
        var line = await proxy.Process.WaitForLineAsync(HardLimitWarning, TimeSpan.FromSeconds(30));
        Assert.Contains("warn:", line, StringComparison.Ordinal);
        Assert.Contains("DOTNET_gcConcurrent=1", line, StringComparison.Ordinal);
        Assert.Contains("GC: workstation, non-concurrent, heaps 1, heap hard limit 100663296 bytes", proxy.Process.Output, StringComparison.Ordinal);
    }

    private const string HardLimitWarning = "a heap hard limit without the concurrent GC";

    /// <summary>The real sidecar (the AOT build under tests/run.sh), standalone, with <paramref name="environment"/>.</summary>
    private static async Task<RunningSidecar> SidecarAsync(int appPort, Dictionary<string, string> environment)
    {
        var dir = Directory.CreateTempSubdirectory("meshproxy-gc-settings-").FullName;
        var config = Path.Combine(dir, "sidecar.yaml");
        await File.WriteAllTextAsync(config, $$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: web, namespace: shop }
            spec:
              app: { port: {{appPort}} }
              listeners: { outbound: 0, inbound: 0, admin: 0, stats: 0, inboundAddress: 127.0.0.1 }
              drainDuration: 1s
            """, Ct);
        var command = RepoPaths.Sidecar("--config", config);
        return new RunningSidecar(ExternalProcess.Start(command[0], command[1..], environment), dir);
    }

    private sealed class RunningSidecar(ExternalProcess process, string dir) : IAsyncDisposable
    {
        public ExternalProcess Process { get; } = process;

        public async ValueTask DisposeAsync()
        {
            await Process.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }
}
