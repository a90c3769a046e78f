namespace MeshProxy.Metrics.Runtime;

/// <summary>.NET runtime figures under dotnet_ names, all read at scrape time from the runtime's own counters.</summary>
public static class RuntimeMetrics
{
    public static void Register(MetricsRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        var generations = Enumerable.Range(0, GC.MaxGeneration + 1)
            .Select(static gen => new CallbackSample([gen.ToString(System.Globalization.CultureInfo.InvariantCulture)], () => GC.CollectionCount(gen)))
            .ToArray();
        registry.CreateCallbackCounter("dotnet_gc_collections_total", "Garbage collections since the process started, by generation.", ["generation"], generations);
        registry.CreateCallbackGauge("dotnet_gc_heap_size_bytes", "Bytes in the managed heap at the last garbage collection.", static () => GC.GetGCMemoryInfo().HeapSizeBytes);
        registry.CreateCallbackGauge("dotnet_gc_committed_bytes", "Bytes of memory the GC has committed.", static () => GC.GetGCMemoryInfo().TotalCommittedBytes);
        registry.CreateCallbackCounter("dotnet_gc_allocated_bytes_total", "Bytes allocated on the managed heap since the process started.", static () => GC.GetTotalAllocatedBytes());
        registry.CreateCallbackCounter("dotnet_gc_pause_seconds_total", "Time the runtime has been paused for garbage collection.", static () => GC.GetTotalPauseDuration().TotalSeconds);
        registry.CreateCallbackGauge("dotnet_threadpool_threads", "Thread pool threads that currently exist.", static () => ThreadPool.ThreadCount);
        registry.CreateCallbackGauge("dotnet_threadpool_queue_length", "Work items queued to the thread pool and not yet started.", static () => ThreadPool.PendingWorkItemCount);
        registry.CreateCallbackCounter("dotnet_threadpool_completed_items_total", "Work items the thread pool has completed.", static () => ThreadPool.CompletedWorkItemCount);
        registry.CreateCallbackCounter("dotnet_monitor_lock_contention_total", "Times a thread waited for a contended lock.", static () => Monitor.LockContentionCount);
    }
}
