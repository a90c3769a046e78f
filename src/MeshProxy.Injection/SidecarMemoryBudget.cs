using System.Globalization;

namespace MeshProxy.Injection;

/// <summary>
/// The smallest memory limit the sidecar runs in. The injector splits the limit between the GC heap
/// (DOTNET_GCHeapHardLimit, a share of it) and the rest of the process, and each part has a floor, measured on
/// the Native AOT build (benchmarks/RESULTS.md, "The 32 MiB heap-limit crash"): outside the GC heap, the
/// executable's pages, libcrypto, thread stacks and socket buffers keep ~30 MiB resident, idle or under load;
/// the GC committed at most ~19 MiB serving wrk's 64 connections. A limit below either floor does not give a
/// smaller sidecar but one the kernel kills or whose GC runs out of heap, so it is refused at injection, where
/// the pod's author reads the reason, rather than found later as a crash loop.
/// </summary>
internal static class SidecarMemoryBudget
{
    private const long MiB = 1024 * 1024;

    /// <summary>The GC heap's floor: ~1.7x what it committed at its peak under wrk's 64 connections.</summary>
    public const long MinimumHeapBytes = 32 * MiB;

    /// <summary>The rest of the process: ~30 MiB resident outside the GC heap, idle and under load.</summary>
    public const long MinimumOtherBytes = 32 * MiB;

    /// <summary>Null when <paramref name="limitBytes"/> leaves both parts their floor at <paramref name="heapPercent"/> (0: no heap limit); else why not.</summary>
    public static string? Check(decimal limitBytes, int heapPercent)
    {
        var heap = heapPercent > 0 ? limitBytes * heapPercent / 100m : 0m;
        var other = limitBytes - heap;
        if (heapPercent > 0 ? heap >= MinimumHeapBytes && other >= MinimumOtherBytes : limitBytes >= MinimumHeapBytes + MinimumOtherBytes)
        {
            return null;
        }

        var split = heapPercent > 0
            ? string.Create(CultureInfo.InvariantCulture, $"at {Annotations.GcHeapHardLimitPercent} {heapPercent} its GC heap would get {Mebibytes(heap)} and the rest of the process (code, thread stacks, socket buffers) {Mebibytes(other)}, and each needs at least {MinimumHeapBytes / MiB} MiB")
            : string.Create(CultureInfo.InvariantCulture, $"it needs {(MinimumHeapBytes + MinimumOtherBytes) / MiB} MiB for its GC heap and the rest of the process");
        return string.Create(CultureInfo.InvariantCulture, $"is too small for the sidecar: {split}; use at least {Minimum(heapPercent) / MiB}Mi");
    }

    /// <summary>The smallest limit, in whole MiB, that passes <see cref="Check"/> at <paramref name="heapPercent"/>.</summary>
    public static long Minimum(int heapPercent)
    {
        if (heapPercent <= 0)
        {
            return MinimumHeapBytes + MinimumOtherBytes;
        }

        var forHeap = MinimumHeapBytes * 100m / heapPercent;
        var forOther = heapPercent < 100 ? MinimumOtherBytes * 100m / (100 - heapPercent) : decimal.MaxValue;
        return (long)Math.Ceiling(Math.Max(forHeap, forOther) / MiB) * MiB;
    }

    private static string Mebibytes(decimal bytes) => string.Create(CultureInfo.InvariantCulture, $"{Math.Round((double)(bytes / MiB), 1)} MiB");
}
