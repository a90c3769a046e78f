using System.Text.RegularExpressions;
using MeshProxy.Config.Resources;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.Config.Parsing;

/// <summary>What reading some configuration produced: the good resources, and what was wrong with the rest.</summary>
public sealed record ParseResult(
    IReadOnlyList<Resource> Resources,
    IReadOnlyList<ConfigDiagnostic> Errors,
    IReadOnlyList<ConfigDiagnostic> Warnings)
{
    public bool IsValid => Errors.Count == 0;

    public IEnumerable<T> OfKind<T>() where T : Resource => Resources.OfType<T>();

    /// <summary>Throws <see cref="ConfigException"/> with every error when there is any.</summary>
    public ParseResult ThrowIfInvalid() => Errors.Count == 0 ? this : throw new ConfigException(Errors);
}

/// <summary>
/// Reads Kubernetes-style YAML (several documents per file) into typed resources. A resource with an
/// error is left out and the error says file, line, field path and reason; the other resources in the
/// same file are still returned, so one bad resource never takes the rest down.
/// </summary>
public static partial class ResourceParser
{
    private delegate Resource? KindParser(ObjectMeta meta, SourceLocation source, YamlMap spec);

    private static readonly Dictionary<string, KindParser> Kinds = new(StringComparer.Ordinal)
    {
        [SidecarResource.KindName] = SidecarParser.Parse,
        [ServiceResource.KindName] = ServiceParser.Parse,
        [HttpRouteResource.KindName] = HttpRouteParser.Parse,
        [MeshConfigResource.KindName] = MeshConfigParser.Parse,
        [AuthorizationPolicyResource.KindName] = AuthorizationPolicyParser.Parse,
        [DestinationPolicyResource.KindName] = DestinationPolicyParser.Parse,
        [EgressPolicyResource.KindName] = EgressPolicyParser.Parse,
        [PeerAuthenticationResource.KindName] = PeerAuthenticationParser.Parse,
        [RequestAuthenticationResource.KindName] = RequestAuthenticationParser.Parse,
    };

    public static IReadOnlyCollection<string> KnownKinds => Kinds.Keys;

    /// <summary>A file that cannot be read (gone, a directory, no permission) is a diagnostic too, like any other bad input.</summary>
    public static ParseResult ParseFile(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new ParseResult([], [new ConfigDiagnostic(path, 0, string.Empty, $"cannot be read: {ex.Message}")], []);
        }

        return ParseText(text, path);
    }

    /// <summary>Every *.yaml / *.yml file in a directory (not recursive), in name order so results are stable.</summary>
    public static ParseResult ParseDirectory(string directory)
    {
        var resources = new List<Resource>();
        var errors = new List<ConfigDiagnostic>();
        var warnings = new List<ConfigDiagnostic>();
        var files = Directory.EnumerateFiles(directory)
            .Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
            .Where(f => !Path.GetFileName(f).StartsWith('.'))
            .Order(StringComparer.Ordinal);
        foreach (var file in files)
        {
            var one = ParseFile(file);
            resources.AddRange(one.Resources);
            errors.AddRange(one.Errors);
            warnings.AddRange(one.Warnings);
        }

        RejectDuplicates(resources, errors);
        return new ParseResult(resources, errors, warnings);
    }

    public static ParseResult ParseText(string text, string fileName) => ParseText(text, fileName, asked: null);

    /// <param name="asked">Collects the shape path of every field the readers looked up (see <see cref="DiagnosticSink.Asked"/>).</param>
    internal static ParseResult ParseText(string text, string fileName, HashSet<string>? asked)
    {
        var sink = new DiagnosticSink(fileName) { Asked = asked };
        var resources = new List<Resource>();
        if (!YamlDocuments.TryLoad(text, fileName, out var documents, out var notYaml))
        {
            return new ParseResult(resources, [notYaml], sink.Warnings);
        }

        for (var i = 0; i < documents.Count; i++)
        {
            var root = documents[i].RootNode;
            if (root is YamlScalarNode { Value: null or "" })
            {
                continue; // an empty document between two "---" is harmless
            }

            if (root is not YamlMappingNode mapping)
            {
                sink.Error(root, string.Empty, $"document {i + 1} must be a mapping with apiVersion, kind, metadata and spec");
                continue;
            }

            var errorsBefore = sink.Errors.Count;
            Resource? resource;
            try
            {
                resource = ParseDocument(new YamlMap(mapping, string.Empty, sink));
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // A reader of ours that did not foresee some shape of input must cost this document, not the
                // process that reads it: the document is refused like any other invalid one.
                sink.Error(root, string.Empty, $"document {i + 1} cannot be read ({ex.GetType().Name}: {ex.Message})");
                continue;
            }

            if (resource is not null && sink.Errors.Count == errorsBefore)
            {
                resources.Add(resource);
            }
        }

        RejectDuplicates(resources, sink.Errors);
        return new ParseResult(resources, sink.Errors, sink.Warnings);
    }

    private static Resource? ParseDocument(YamlMap doc)
    {
        var apiVersion = doc.String("apiVersion", required: true);
        var kind = doc.String("kind", required: true);
        if (apiVersion is not null && apiVersion != Resource.ApiVersion)
        {
            doc.Error("apiVersion", $"'{apiVersion}' is not supported (expected {Resource.ApiVersion})");
        }

        var metaMap = doc.Map("metadata", required: true);
        var spec = doc.Map("spec", required: true);
        doc.Finish();
        if (kind is null || metaMap is null || spec is null)
        {
            return null;
        }

        if (!Kinds.TryGetValue(kind, out var parse))
        {
            doc.Error("kind", $"unknown kind '{kind}' (known: {string.Join(", ", Kinds.Keys.Order(StringComparer.Ordinal))})");
            return null;
        }

        var meta = ParseMeta(metaMap);
        if (meta is null)
        {
            return null;
        }

        var resource = parse(meta, new SourceLocation(doc.Sink.File, doc.Line), spec);
        spec.Finish();
        return resource;
    }

    private static ObjectMeta? ParseMeta(YamlMap meta)
    {
        var name = meta.String("name", required: true);
        var ns = meta.String("namespace") ?? "default";
        var labels = meta.StringMap("labels");
        var annotations = meta.StringMap("annotations");
        meta.Finish();
        if (name is not null && !IsDnsLabel(name, 253))
        {
            meta.Error("name", $"'{name}' must be a lowercase DNS name (a-z, 0-9, '-', '.')");
            return null;
        }

        if (!IsDnsLabel(ns, 63))
        {
            meta.Error("namespace", $"'{ns}' must be a lowercase DNS label");
            return null;
        }

        return name is null ? null : new ObjectMeta(name, ns, labels, annotations);
    }

    private static void RejectDuplicates(List<Resource> resources, List<ConfigDiagnostic> errors)
    {
        var seen = new Dictionary<string, Resource>(StringComparer.Ordinal);
        for (var i = 0; i < resources.Count; i++)
        {
            var r = resources[i];
            if (seen.TryGetValue(r.Key, out var first))
            {
                errors.Add(new ConfigDiagnostic(r.Source.File, r.Source.Line, "metadata.name",
                    $"duplicate {r.Kind} '{r.Metadata.Namespace}/{r.Metadata.Name}' (first defined at {first.Source})"));
                resources.RemoveAt(i--);
            }
            else
            {
                seen.Add(r.Key, r);
            }
        }
    }

    internal static bool IsDnsLabel(string value, int maxLength) =>
        value.Length is > 0 && value.Length <= maxLength && DnsName().IsMatch(value);

    internal static bool IsHostName(string value) =>
        value.Length is > 0 and <= 253 && HostName().IsMatch(value);

    [GeneratedRegex("^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")]
    private static partial Regex DnsName();

    // A host as clients write it: a DNS name (any case), optionally with a leading "*." wildcard.
    [GeneratedRegex(@"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")]
    private static partial Regex HostName();
}
