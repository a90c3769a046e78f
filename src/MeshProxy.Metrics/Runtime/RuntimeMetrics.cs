namespace MeshProxy.Metrics.Runtime;

/// <summary>
/// .NET runtime figures under the dotnet_ names our dashboards use, read at scrape time from the runtime's own
/// counters. prometheus-net's <see cref="Prometheus.DotNetStats"/> (registered by <see cref="ProcessMetrics"/>)
/// has only collection counts and total memory, under other names; these are the GC, thread-pool and lock figures
/// an operator needs to tell allocation pressure from thread starvation.
/// </summary>
public static class RuntimeMetrics
{
    public static void Register(MetricsRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        var generations = Enumerable.Range(0, GC.MaxGeneration + 1)
            .Select(static gen => new CallbackSample([gen.ToString(System.Globalization.CultureInfo.InvariantCulture)], () => GC.CollectionCount(gen)))
            .ToArray();
        registry.CallbackCounter("dotnet_gc_collections_total", "Garbage collections since the process started, by generation.", ["generation"], generations);
        registry.CallbackGauge("dotnet_gc_heap_size_bytes", "Bytes in the managed heap at the last garbage collection.", static () => GC.GetGCMemoryInfo().HeapSizeBytes);
        registry.CallbackGauge("dotnet_gc_committed_bytes", "Bytes of memory the GC has committed.", static () => GC.GetGCMemoryInfo().TotalCommittedBytes);
        registry.CallbackCounter("dotnet_gc_allocated_bytes_total", "Bytes allocated on the managed heap since the process started.", static () => GC.GetTotalAllocatedBytes());
        registry.CallbackCounter("dotnet_gc_pause_seconds_total", "Time the runtime has been paused for garbage collection.", static () => GC.GetTotalPauseDuration().TotalSeconds);
        registry.CallbackGauge("dotnet_threadpool_threads", "Thread pool threads that currently exist.", static () => ThreadPool.ThreadCount);
        registry.CallbackGauge("dotnet_threadpool_queue_length", "Work items queued to the thread pool and not yet started.", static () => ThreadPool.PendingWorkItemCount);
        registry.CallbackCounter("dotnet_threadpool_completed_items_total", "Work items the thread pool has completed.", static () => ThreadPool.CompletedWorkItemCount);
        registry.CallbackCounter("dotnet_monitor_lock_contention_total", "Times a thread waited for a contended lock.", static () => Monitor.LockContentionCount);
    }
}
