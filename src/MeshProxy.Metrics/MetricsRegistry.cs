using Prometheus;

namespace MeshProxy.Metrics;

/// <summary>Settings of a <see cref="MetricsRegistry"/>.</summary>
public sealed record MetricsOptions
{
    /// <summary>Series an Istio label group may hold; new label sets past it are dropped and counted.</summary>
    public int MaxSeriesPerFamily { get; init; } = 10_000;
}

/// <summary>One sample of a callback metric: its label values and where its value is read at scrape time.</summary>
public sealed record CallbackSample(IReadOnlyList<string> LabelValues, Func<double> Read);

/// <summary>
/// The metrics of one process (a sidecar, the control plane): a prometheus-net <see cref="CollectorRegistry"/>
/// of its own rather than the static default, so that tests can host several sidecars in one process, with
/// nothing registered in it but what we register (no default collectors). prometheus-net does the storage
/// and both expositions; what is ours is the Istio label-set cache (<see cref="Istio.IstioMetrics"/>), the
/// scrape-time callback metrics, and <c>meshproxy_metrics_series_dropped_total{family}</c>.
/// </summary>
public sealed class MetricsRegistry
{
    private readonly Counter _dropped;

    public MetricsRegistry(MetricsOptions? options = null)
    {
        Options = options ?? new MetricsOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Options.MaxSeriesPerFamily, nameof(options));
        Collectors = Prometheus.Metrics.NewCustomRegistry();
        Factory = NoDefaultExemplars(Prometheus.Metrics.WithCustomRegistry(Collectors));
        SinkFactory = NoDefaultExemplars(Prometheus.Metrics.WithCustomRegistry(Prometheus.Metrics.NewCustomRegistry()));
        _dropped = Factory.CreateCounter(
            "meshproxy_metrics_series_dropped_total",
            "Recordings dropped because their metric family had reached its maximum number of series.",
            ["family"]);
    }

    public MetricsOptions Options { get; }

    /// <summary>What is exported; <see cref="MetricsExposition"/> writes it.</summary>
    public CollectorRegistry Collectors { get; }

    /// <summary>Creates metrics in <see cref="Collectors"/>. Exemplars only where a caller passes one.</summary>
    public IMetricFactory Factory { get; }

    /// <summary>Creates metrics in a registry that is never exported: where recordings past a series cap go.</summary>
    internal IMetricFactory SinkFactory { get; }

    /// <summary>The drop counter of <paramref name="family"/> (a capped label group), exported at 0 from now on.</summary>
    public Counter.Child DroppedCounter(string family) => _dropped.WithLabels(family);

    /// <summary>
    /// Runs <paramref name="update"/> before every scrape (e.g. reading /proc once for several gauges).
    /// One that throws costs only what it would have updated; the scrape goes on.
    /// </summary>
    public void BeforeScrape(Action update)
    {
        ArgumentNullException.ThrowIfNull(update);
        Collectors.AddBeforeCollectCallback(() =>
        {
            try
            {
                update();
            }
            catch (Exception)
            {
                // A failing source must not fail the whole exposition; its own samples say what is missing.
            }
        });
    }

    /// <summary>A gauge read from <paramref name="read"/> at scrape time. While the callback throws, its sample is absent.</summary>
    public void CallbackGauge(string name, string help, Func<double> read) =>
        CallbackGauge(name, help, [], [new CallbackSample([], read)]);

    public void CallbackGauge(string name, string help, IReadOnlyList<string> labelNames, IReadOnlyList<CallbackSample> samples)
    {
        var gauge = Factory.CreateGauge(name, help, [.. labelNames], new GaugeConfiguration { SuppressInitialValue = true });
        AddCallbacks(samples, labelNames.Count, values => gauge.WithLabels(values), static (child, value) => child.Set(value));
    }

    /// <summary>A counter read from <paramref name="read"/> at scrape time; the source must never decrease.</summary>
    public void CallbackCounter(string name, string help, Func<double> read) =>
        CallbackCounter(name, help, [], [new CallbackSample([], read)]);

    public void CallbackCounter(string name, string help, IReadOnlyList<string> labelNames, IReadOnlyList<CallbackSample> samples)
    {
        var counter = Factory.CreateCounter(name, help, [.. labelNames], new CounterConfiguration { SuppressInitialValue = true });
        AddCallbacks(samples, labelNames.Count, values => counter.WithLabels(values), static (child, value) => child.IncTo(value));
    }

    private void AddCallbacks<TChild>(IReadOnlyList<CallbackSample> samples, int labelCount, Func<string[], TChild> child, Action<TChild, double> set)
        where TChild : ChildBase
    {
        var bound = new (TChild Child, Func<double> Read)[samples.Count];
        for (var i = 0; i < samples.Count; i++)
        {
            var sample = samples[i] ?? throw new ArgumentException("A callback sample is null.", nameof(samples));
            ArgumentNullException.ThrowIfNull(sample.Read, nameof(samples));
            if (sample.LabelValues.Count != labelCount)
            {
                throw new ArgumentException($"The metric has {labelCount} labels but a sample has {sample.LabelValues.Count} values.", nameof(samples));
            }

            bound[i] = (child([.. sample.LabelValues]), sample.Read);
        }

        Collectors.AddBeforeCollectCallback(() =>
        {
            foreach (var (target, read) in bound)
            {
                try
                {
                    set(target, read());
                    target.Publish();
                }
                catch (Exception)
                {
                    // A failing source loses its own sample for this scrape; the rest of the exposition still goes out.
                    target.Unpublish();
                }
            }
        });
    }

    // prometheus-net's default exemplar provider reads Activity.Current on every Inc/Observe and allocates an
    // exemplar when there is one: a cost on every traced request for every metric. Exemplars are attached
    // explicitly instead, where they mean something (the request duration of a sampled request).
    private static MetricFactory NoDefaultExemplars(MetricFactory factory)
    {
        factory.ExemplarBehavior = ExemplarBehavior.NoExemplars();
        return factory;
    }
}
