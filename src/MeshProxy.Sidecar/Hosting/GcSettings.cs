using System.Globalization;
using System.Text;

namespace MeshProxy.Sidecar.Hosting;

/// <summary>
/// The garbage collector's configuration as the runtime resolved it, logged once at start. The build's
/// settings (MeshProxy.Sidecar.csproj) and the injector's environment (DOTNET_GCHeapHardLimit) are only
/// worth what the runtime makes of them, and a runtime ignores a setting it cannot use without a word:
/// Native AOT drops a DOTNET_GC* value written with "0x", and cannot switch to the server GC from the
/// environment. Measured reasons for the settings: benchmarks/RESULTS.md "GC settings of the sidecar".
/// </summary>
internal static class GcSettings
{
    private const string Gen0SizeVariable = "DOTNET_GCgen0size";

    /// <summary>One line, e.g. "workstation, non-concurrent, heaps 1, heap hard limit 201326592 bytes, conserve memory 0, gen0 budget 4194304 bytes".</summary>
    public static string Describe()
    {
        var variables = GC.GetConfigurationVariables();
        long Number(string name) => variables.TryGetValue(name, out var v) ? Convert.ToInt64(v, CultureInfo.InvariantCulture) : 0;
        bool Flag(string name) => variables.TryGetValue(name, out var v) && v is true;

        var text = new StringBuilder();
        text.Append(Flag("ServerGC") ? "server" : "workstation")
            .Append(Flag("ConcurrentGC") ? ", concurrent" : ", non-concurrent")
            .Append(CultureInfo.InvariantCulture, $", heaps {Number("HeapCount")}");
        if (Flag("ServerGC"))
        {
            // DATAS (dynamic adaptation of the heap count) only exists for the server GC.
            text.Append(CultureInfo.InvariantCulture, $", dynamic adaptation {Number("GCDynamicAdaptationMode")}");
        }

        var limit = Number("GCHeapHardLimit");
        text.Append(limit > 0 ? string.Create(CultureInfo.InvariantCulture, $", heap hard limit {limit} bytes") : ", no heap hard limit")
            .Append(CultureInfo.InvariantCulture, $", conserve memory {Number("GCConserveMem")}");

        // The runtime does not report the gen0 budget; what it was given is the next best thing. A value
        // that is not bare hexadecimal is named as ignored, as Native AOT treats it.
        var gen0 = Environment.GetEnvironmentVariable(Gen0SizeVariable);
        text.Append(gen0 switch
        {
            null or "" => ", gen0 budget: the runtime's default",
            _ when long.TryParse(gen0, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var bytes) && bytes > 0 =>
                string.Create(CultureInfo.InvariantCulture, $", gen0 budget {bytes} bytes"),
            _ => $", gen0 budget: the runtime's default ({Gen0SizeVariable}='{gen0}' is not bare hexadecimal and is ignored)",
        });
        return text.ToString();
    }

    /// <summary>
    /// A heap hard limit under the non-concurrent GC (the build's choice): the .NET 10 runtime leaves the last page of
    /// the GC's region bookkeeping uncommitted when there is no background-GC mark array, and the heap growing to the
    /// top of its limited range writes there: SIGSEGV, not an OutOfMemoryException (dotnet/runtime#129681, fixed by
    /// #131947 after 10.0). Reproduced here under wrk with 16 and 32 MiB limits; never with the concurrent GC
    /// (benchmarks/RESULTS.md, "The 32 MiB heap-limit crash"). Without a limit the range is 256 GiB and never reached.
    /// </summary>
    public static bool HardLimitWithoutConcurrentGc()
    {
        var variables = GC.GetConfigurationVariables();
        return variables.TryGetValue("GCHeapHardLimit", out var limit) && Convert.ToInt64(limit, CultureInfo.InvariantCulture) > 0 &&
               !(variables.TryGetValue("ConcurrentGC", out var concurrent) && concurrent is true);
    }
}
