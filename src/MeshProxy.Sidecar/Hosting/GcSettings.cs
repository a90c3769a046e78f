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
    /// <summary>One line, e.g. "workstation, non-concurrent, heaps 1, heap hard limit 201326592 bytes, conserve memory 0".</summary>
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
        return text.ToString();
    }
}
