using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http.Features;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Request features read and written through the collection's <see cref="Type"/> indexer rather than
/// <c>Get&lt;T&gt;</c>/<c>Set&lt;T&gt;</c>, on the request path. Kestrel's <c>Get&lt;T&gt;</c> is a generic
/// virtual method over reference types, so it runs shared code in which each of the ~40
/// <c>typeof(T) == typeof(known feature)</c> tests of its walk is a runtime type lookup, and a miss walks the
/// connection's features the same way again: ~2,000 instructions a read under callgrind
/// (benchmarks/RESULTS.md, "Resilience cost"). The indexer compares its key with constants. Inlined, so that
/// <typeparamref name="T"/> is exact at each call site and <c>typeof(T)</c> is a constant there too.
/// Lives here, with the request ids, as the request-path vocabulary every layer above may use.
/// </summary>
internal static class FeatureAccess
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T? Find<T>(this IFeatureCollection features)
        where T : class => features[typeof(T)] as T;

    /// <summary>Sets (or, with null, removes) the feature of type <typeparamref name="T"/>, as <c>Set&lt;T&gt;</c> does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Put<T>(this IFeatureCollection features, T? feature)
        where T : class => features[typeof(T)] = feature;
}
