using MeshProxy.Api.V1;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Configuration;

namespace MeshProxy.Sidecar.ControlPlaneClient;

/// <summary>
/// A pushed snapshot into the runtime model: each resource's YAML through the same parser as files,
/// then the bootstrap's own Sidecar resource plus the pushed resources through the same builder.
/// Throws <see cref="ConfigException"/> with every error; nothing half-applied escapes.
/// </summary>
internal static class SnapshotTranslator
{
    public static SidecarSnapshot Translate(Snapshot pushed, SidecarResource bootstrap, string source, DateTimeOffset now, Action<ConfigDiagnostic>? warn = null)
    {
        var resources = new List<Resource> { bootstrap };
        var errors = new List<ConfigDiagnostic>();
        foreach (var item in pushed.Resources)
        {
            var name = $"{item.Kind}/{item.Namespace}/{item.Name}";
            var parsed = ResourceParser.ParseText(item.Yaml, name);
            errors.AddRange(parsed.Errors);
            foreach (var warning in parsed.Warnings)
            {
                warn?.Invoke(warning);
            }

            foreach (var resource in parsed.Resources)
            {
                if (resource.Key != name)
                {
                    errors.Add(new ConfigDiagnostic(name, resource.Source.Line, "metadata", $"the document is {resource.Key}, not {name}"));
                }
                else if (resource is not SidecarResource)
                {
                    // The workload's own Sidecar comes from its bootstrap file, never from the control plane.
                    resources.Add(resource);
                }
            }
        }

        var snapshot = SnapshotBuilder.Build(new ParseResult(resources, errors, []), pushed.VersionInfo, source, now);
        return snapshot;
    }
}
