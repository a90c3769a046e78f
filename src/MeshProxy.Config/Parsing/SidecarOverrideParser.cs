using MeshProxy.Config.Resources;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.Config.Parsing;

/// <summary>What reading a pod's override produced: the override when it is valid, every error otherwise.</summary>
public sealed record SidecarOverrideResult(SidecarOverride? Override, IReadOnlyList<ConfigDiagnostic> Errors)
{
    public SidecarOverride ThrowIfInvalid() => Errors.Count == 0 && Override is not null ? Override : throw new ConfigException(Errors);
}

/// <summary>
/// Reads a pod's override of its Sidecar spec: one YAML (or JSON) mapping with the Sidecar's own field names and
/// rules, for example <c>{ drainDuration: 20s, listeners: { admin: 15100 } }</c>. Stricter than a resource file: an
/// unknown field is an error, not a warning, since a misspelt field would silently leave the pod without what it
/// asked for, and the fields that say who the workload is or how the mesh reaches it are refused by name.
/// </summary>
public static class SidecarOverrideParser
{
    /// <summary>
    /// What <c>app.protocol</c> may be per pod: what the inbound listener can speak to the app (TCP: a byte stream).
    /// The injector's <c>sidecar.meshproxy.io/appProtocol</c> takes the same list, so both ways of setting it agree.
    /// </summary>
    public static readonly IReadOnlyList<string> AppProtocolNames = ["HTTP", "HTTP2", "GRPC", "TCP"];

    // Fields of the Sidecar spec that are someone else's to set, and why; named so the refusal explains itself.
    private static readonly (string Field, string Reason)[] NotPerPod =
    [
        ("workload", "comes from the pod itself (name, namespace, service account, labels)"),
        ("controlPlane", "is the injector's: every pod of the mesh uses the same control plane"),
        ("tls", "the identity comes from the control plane's certificate authority"),
        ("egress", "is scoped by the control plane's Sidecar resources, not per pod"),
    ];

    private static readonly (string Field, string Reason)[] ListenersNotPerPod =
    [
        ("stats", "is fixed at 15020: the injected probes, postStart hook and scrape annotations use it"),
        ("inboundAddress", "is fixed: capture redirects inbound traffic to the pod's own addresses"),
        ("outboundAddress", "is fixed: capture redirects outbound traffic to 127.0.0.1"),
    ];

    /// <summary>Reads <paramref name="text"/>; every error names <paramref name="sourceName"/>:line: field: reason.</summary>
    public static SidecarOverrideResult Parse(string text, string sourceName)
    {
        if (!YamlDocuments.TryLoad(text, sourceName, out var documents, out var notYaml))
        {
            return new SidecarOverrideResult(null, [notYaml]);
        }

        if (documents.Count != 1 || documents[0].RootNode is not YamlMappingNode root)
        {
            var line = documents.Count > 0 ? (int)documents[0].RootNode.Start.Line : 1;
            return new SidecarOverrideResult(null, [new ConfigDiagnostic(sourceName, line, string.Empty,
                "must be one mapping of Sidecar spec fields, such as { drainDuration: 20s, app: { port: 8080 } }")]);
        }

        var sink = new DiagnosticSink(sourceName);
        var spec = new YamlMap(root, string.Empty, sink);
        var result = new SidecarOverride(new SourceLocation(sourceName, (int)root.Start.Line))
        {
            DrainDuration = spec.Duration("drainDuration", TimeSpan.Zero, SidecarParser.MaxDrainDuration),
        };

        if (spec.Map("app") is { } app)
        {
            var protocol = app.Enum("protocol", AppProtocolNames);
            result = result with { AppPort = app.Port("port"), AppProtocol = protocol is null ? null : AppProtocols.Parse(protocol) };
            app.RejectUnknown();
        }

        if (spec.Map("listeners") is { } listeners)
        {
            // A real port each: 0 (any free port, for tests) would leave capture nothing to redirect to.
            result = result with { OutboundPort = listeners.Port("outbound"), InboundPort = listeners.Port("inbound"), AdminPort = listeners.Port("admin") };
            Refuse(listeners, ListenersNotPerPod);
            listeners.RejectUnknown();
        }

        Refuse(spec, NotPerPod);
        spec.RejectUnknown();
        return sink.Errors.Count == 0 ? new SidecarOverrideResult(result, []) : new SidecarOverrideResult(null, sink.Errors);
    }

    private static void Refuse(YamlMap map, (string Field, string Reason)[] fields)
    {
        foreach (var (field, reason) in fields)
        {
            if (map.Has(field))
            {
                map.Error(field, $"cannot be set per pod: {reason}");
            }
        }
    }
}
