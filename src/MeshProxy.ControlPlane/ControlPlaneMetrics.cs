using MeshProxy.ControlPlane.Discovery;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.Metrics;
using MeshProxy.Metrics.Runtime;
using Prometheus;

namespace MeshProxy.ControlPlane;

/// <summary>The control plane's own figures, on the monitoring port's /metrics.</summary>
internal sealed class ControlPlaneMetrics
{
    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    public ControlPlaneMetrics(ConnectionRegistry connections, IConfigSource directory, Kubernetes.KubernetesSource? kubernetes = null)
    {
        Registry = new MetricsRegistry();
        if (kubernetes is not null)
        {
            // Per watched kind: is its watch up, and for how long has it not been (alert on this: the mesh is serving a stale picture).
            Registry.CallbackGauge("meshproxy_controlplane_kubernetes_connected", "1 while the informer of this kind is in contact with the Kubernetes API server, 0 while it is not (the last known state keeps serving).", ["resource"],
                [.. kubernetes.Informers.Select(i => new CallbackSample([i.Resource], () => i.Health.Connected ? 1 : 0))]);
            Registry.CallbackGauge("meshproxy_controlplane_kubernetes_disconnected_seconds", "Seconds since this kind's informer lost the Kubernetes API server; 0 while connected.", ["resource"],
                [.. kubernetes.Informers.Select(i => new CallbackSample([i.Resource], () => i.Health.DisconnectedSince is { } since ? (DateTimeOffset.UtcNow - since).TotalSeconds : 0))]);
            Registry.CallbackGauge("meshproxy_controlplane_kubernetes_kind_served", "1 while the API server serves this kind, 0 while its list answers 404 (a CRD not installed: read as empty).", ["resource"],
                [.. kubernetes.Informers.Select(i => new CallbackSample([i.Resource], () => i.Health.NotServed ? 0 : 1))]);
                        Registry.CallbackGauge("meshproxy_controlplane_kubernetes_relists", "Full relists of this kind after the first (a watch too old to resume, 410 Gone).", ["resource"],
                [.. kubernetes.Informers.Select(i => new CallbackSample([i.Resource], () => i.Health.Relists))]);
        }

        Registry.CallbackGauge("meshproxy_controlplane_connected_sidecars", "Sidecars with an open StreamSnapshots stream.", () => connections.Count);
        Registry.CallbackGauge("meshproxy_controlplane_invalid_resources", "Resources in the configuration directory that are refused (their last good version, if any, keeps serving).", () => directory.Current.InvalidResources);
        Registry.CallbackGauge("meshproxy_controlplane_held_back_resources", "Resources that parse but that the sidecars would refuse in the set (a route to an unknown service...): not pushed; their last good version, if any, keeps serving.", () => directory.Current.HeldBack.Count);
        Registry.CallbackGauge("meshproxy_controlplane_resources", "Resources being served.", () => directory.Current.Resources.Count);
        Registry.CallbackGauge("meshproxy_controlplane_config_generation", "Configuration generation; increases at every change of the directory.", () => directory.Current.Generation);
        Pushes = Registry.Factory.CreateCounter("meshproxy_controlplane_pushes_total", "Snapshots sent to sidecars.");
        Nacks = Registry.Factory.CreateCounter("meshproxy_controlplane_nacks_total", "Snapshots refused by a sidecar.");
        StreamRefusals = Registry.Factory.CreateCounter(
            "meshproxy_controlplane_stream_refusals_total", "Config streams (and TLS client certificates) refused, by reason: missing_credential, token_rejected, workload_mismatch...", ["reason"]);
        PushLatency = Registry.Factory.CreateHistogram(
            "meshproxy_controlplane_push_latency_seconds", "Time from sending a snapshot to its ACK or NACK.", new HistogramConfiguration { Buckets = LatencyBuckets });
        ProcessMetrics.Register(Registry);
        RuntimeMetrics.Register(Registry);
    }

    public MetricsRegistry Registry { get; }

    public Counter Pushes { get; }

    public Counter Nacks { get; }

    public Histogram PushLatency { get; }

    /// <summary>Kubernetes mode's refusals of a config stream's credential or claim (see StreamAuthenticator).</summary>
    public Counter StreamRefusals { get; }
}
