using System.Globalization;
using System.Runtime;

/// <summary>
/// Loaded into the sidecar by run-load.sh through DOTNET_STARTUP_HOOKS, so that the harness can read
/// what /proc cannot tell: bytes allocated, collections per generation and GC pause time. Every 100 ms
/// it rewrites MESHPROXY_PROBE_FILE with one line; the harness samples it at the edges of a measured
/// window. The sidecar itself carries no such code.
/// </summary>
#pragma warning disable CA1050 // The runtime looks the hook up by this exact name, outside any namespace.
internal static class StartupHook
#pragma warning restore CA1050
{
    private static readonly TimeSpan Period = TimeSpan.FromMilliseconds(100);

    public static void Initialize()
    {
        var path = Environment.GetEnvironmentVariable("MESHPROXY_PROBE_FILE");
        if (string.IsNullOrEmpty(path))
        {
            return;
        }

        new Thread(() => Run(path)) { IsBackground = true, Name = "runtime-probe" }.Start();
    }

    private static void Run(string path)
    {
        var temp = path + ".tmp";
        while (true)
        {
            var info = GC.GetGCMemoryInfo();
            var line = string.Join(' ',
                GC.GetTotalAllocatedBytes(precise: false).ToString(CultureInfo.InvariantCulture),
                GC.CollectionCount(0).ToString(CultureInfo.InvariantCulture),
                GC.CollectionCount(1).ToString(CultureInfo.InvariantCulture),
                GC.CollectionCount(2).ToString(CultureInfo.InvariantCulture),
                GC.GetTotalPauseDuration().TotalMilliseconds.ToString("F3", CultureInfo.InvariantCulture),
                info.HeapSizeBytes.ToString(CultureInfo.InvariantCulture),
                info.TotalCommittedBytes.ToString(CultureInfo.InvariantCulture),
                GCSettings.IsServerGC ? "server" : "workstation",
                Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture));
            try
            {
                File.WriteAllText(temp, line + "\n");
                File.Move(temp, path, overwrite: true);
            }
            catch (IOException)
            {
                // The harness removed its scratch directory: the process is about to be stopped.
                return;
            }

            Thread.Sleep(Period);
        }
    }
}
