using System.Diagnostics;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Configuration;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// The sidecar's spans: one <see cref="ActivitySource"/>, and an OpenTelemetry tracer provider built
/// from the mesh config (parent-based, with a ratio for new traces; OTLP/HTTP protobuf export) and rebuilt when the
/// tracing settings change. With sampling 0 or no OTLP endpoint there is no provider at all, and a
/// request pays one volatile read.
/// </summary>
internal sealed class Tracing : IDisposable
{
    public const string SourceName = "MeshProxy.Sidecar";

    /// <summary>One source for the whole process, as the .NET guidance asks; its version is the assembly's.</summary>
    public static readonly ActivitySource Source = new(SourceName, typeof(Tracing).Assembly.GetName().Version?.ToString());

    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private TracerProvider? _provider;
    private (TracingSpec Spec, string Service)? _built;
    private volatile bool _enabled;
    private double _rootRatio;

    public Tracing(ILogger logger)
    {
        _logger = logger;
    }

    /// <summary>True when this sidecar exports spans. Even then, an unsampled request creates no Activity.</summary>
    public bool Enabled => _enabled && Source.HasListeners();

    /// <summary>
    /// Whether a request that arrives without trace context starts a sampled trace (the configured
    /// ratio). Requests with a context follow their parent's flag; see <see cref="SidecarTelemetry"/>.
    /// </summary>
    public bool SampleRoot() => Random.Shared.NextDouble() < Volatile.Read(ref _rootRatio);

    public void Apply(SidecarSnapshot snapshot, string serviceName)
    {
        var spec = snapshot.Mesh.Tracing;
        lock (_lock)
        {
            if (_built is { } built && built.Spec == spec && built.Service == serviceName)
            {
                return;
            }

            _enabled = false;
            _provider?.Dispose(); // flushes what the old provider still holds
            _provider = null;
            _built = (spec, serviceName);
            if (spec.SamplingPercent <= 0 || spec.OtlpEndpoint is null)
            {
                _logger.TracingOff(spec.SamplingPercent, spec.OtlpEndpoint ?? "none");
                return;
            }

            Volatile.Write(ref _rootRatio, Math.Clamp(spec.SamplingPercent / 100.0, 0, 1));
            _provider = Build(spec, serviceName, snapshot.Workload);
            _enabled = true;
            _logger.TracingOn(spec.SamplingPercent, spec.Propagation.ToString(), spec.OtlpEndpoint);
        }
    }

    /// <summary>Exports what is buffered now (tests, and shutdown).</summary>
    public bool ForceFlush(int timeoutMilliseconds = 5000)
    {
        lock (_lock)
        {
            return _provider?.ForceFlush(timeoutMilliseconds) ?? true;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _enabled = false;
            _provider?.Dispose();
            _provider = null;
        }
    }

    private static TracerProvider Build(TracingSpec spec, string serviceName, WorkloadSpec workload)
    {
        var endpoint = spec.OtlpEndpoint!.TrimEnd('/');
        return Sdk.CreateTracerProviderBuilder()
            .AddSource(SourceName)
            // The ratio is applied before an Activity is started (SampleRoot, and the parent's flag), so
            // only requests to be recorded reach the SDK; it records them all, and stays parent-based
            // as a guard should anything else start an Activity on this source.
            .SetSampler(new ParentBasedSampler(new AlwaysOnSampler()))
            .SetResourceBuilder(ResourceBuilder.CreateEmpty()
                .AddService(serviceName, serviceNamespace: workload.Namespace, autoGenerateServiceInstanceId: true)
                .AddAttributes([
                    new("k8s.namespace.name", workload.Namespace),
                    new("meshproxy.workload", workload.Name),
                ]))
            .AddOtlpExporter(o =>
            {
                // With HTTP/protobuf a programmatic endpoint is used as is: the signal path is ours to add.
                o.Protocol = OtlpExportProtocol.HttpProtobuf;
                o.Endpoint = new Uri(endpoint.EndsWith("/v1/traces", StringComparison.Ordinal) ? endpoint : endpoint + "/v1/traces");
                o.BatchExportProcessorOptions.ScheduledDelayMilliseconds = 1000;
            })
            .Build();
    }
}
