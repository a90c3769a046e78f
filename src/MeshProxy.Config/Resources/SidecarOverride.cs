using System.Text;
using System.Text.Json;
using MeshProxy.Config.Parsing;

namespace MeshProxy.Config.Resources;

/// <summary>
/// A pod's own adjustments to its Sidecar's spec (Istio's <c>proxy.istio.io/config</c>): only the fields that
/// describe this pod's proxy rather than who the workload is or how the mesh reaches it. The injector reads it from
/// the pod annotation and hands it to the sidecar in its environment; the sidecar merges it over its bootstrap.
/// Both ends read it with <see cref="SidecarOverrideParser"/>, so the pod is refused at admission for exactly
/// what the sidecar would refuse at start-up. Null fields leave the bootstrap's value.
/// </summary>
public sealed record SidecarOverride(SourceLocation Source)
{
    /// <summary>The sidecar container's variable holding the override, as <see cref="ToText"/> writes it.</summary>
    public const string EnvironmentVariable = SidecarEnvironment.ProxyConfig;

    public TimeSpan? DrainDuration { get; init; }

    public int? AppPort { get; init; }

    public AppProtocol? AppProtocol { get; init; }

    public int? OutboundPort { get; init; }

    public int? InboundPort { get; init; }

    public int? AdminPort { get; init; }

    public bool IsEmpty => this == new SidecarOverride(Source);

    public SidecarSpec ApplyTo(SidecarSpec spec) => spec with
    {
        DrainDuration = DrainDuration ?? spec.DrainDuration,
        App = new AppSpec(AppPort ?? spec.App.Port, AppProtocol ?? spec.App.Protocol),
        Listeners = spec.Listeners with
        {
            Outbound = OutboundPort ?? spec.Listeners.Outbound,
            Inbound = InboundPort ?? spec.Listeners.Inbound,
            Admin = AdminPort ?? spec.Listeners.Admin,
        },
    };

    /// <summary>
    /// What is wrong with <paramref name="spec"/> once overridden (ports that collide), reported at this override's
    /// source: the spec and the override can each be fine and clash together. Empty when the merge is usable.
    /// </summary>
    public IReadOnlyList<ConfigDiagnostic> ConflictsWith(SidecarSpec spec, SourceLocation? mergedOver = null)
    {
        var merged = ApplyTo(spec);
        var suffix = mergedOver is null ? string.Empty : $" (merged over {mergedOver})";
        return SidecarParser.PortConflicts(merged.Listeners, merged.App.Port)
            .Select(c => new ConfigDiagnostic(Source.File, Source.Line, c.Field, c.Reason + suffix))
            .ToList();
    }

    /// <summary><paramref name="bootstrap"/> with every Sidecar resource's spec overridden; one whose merge conflicts is left out, with its errors.</summary>
    public ParseResult ApplyTo(ParseResult bootstrap)
    {
        var errors = bootstrap.Errors.ToList();
        var resources = new List<Resource>(bootstrap.Resources.Count);
        foreach (var resource in bootstrap.Resources)
        {
            if (resource is not SidecarResource sidecar)
            {
                resources.Add(resource);
                continue;
            }

            var conflicts = ConflictsWith(sidecar.Spec, sidecar.Source);
            errors.AddRange(conflicts);
            if (conflicts.Count == 0)
            {
                resources.Add(sidecar with { Spec = ApplyTo(sidecar.Spec) });
            }
        }

        return bootstrap with { Resources = resources, Errors = errors };
    }

    /// <summary>
    /// The override as one line of JSON (which is YAML), fields in a fixed order: what the injector puts in the
    /// sidecar's environment, read back by <see cref="SidecarOverrideParser.Parse"/>. Stable, so the same pod
    /// annotation always gives the same pod spec.
    /// </summary>
    public string ToText()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (DrainDuration is { } drain)
            {
                json.WriteString("drainDuration", Durations.Format(drain));
            }

            if (AppPort is not null || AppProtocol is not null)
            {
                json.WriteStartObject("app");
                WriteNumber(json, "port", AppPort);
                if (AppProtocol is { } protocol)
                {
                    json.WriteString("protocol", protocol.ToName());
                }

                json.WriteEndObject();
            }

            if (OutboundPort is not null || InboundPort is not null || AdminPort is not null)
            {
                json.WriteStartObject("listeners");
                WriteNumber(json, "outbound", OutboundPort);
                WriteNumber(json, "inbound", InboundPort);
                WriteNumber(json, "admin", AdminPort);
                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());

        static void WriteNumber(Utf8JsonWriter json, string name, int? value)
        {
            if (value is { } v)
            {
                json.WriteNumber(name, v);
            }
        }
    }
}
