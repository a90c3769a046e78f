using System.Text.Json.Nodes;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Schema;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.Config.Tests.Schema;

/// <summary>
/// The CRD schemas and the parser agree, both ways: every schema field parses with the schema's type and a value of
/// another type is refused at that field; every field the parser reads is in the schema; the shipped CRD file is the
/// generator's output; the sample configuration validates against the schemas.
/// </summary>
public sealed class CrdSchemaTests
{
    public static TheoryData<string> Kinds() => [.. ResourceSchemas.All.Select(k => k.Kind)];

    public static TheoryData<string, string> Leaves()
    {
        var data = new TheoryData<string, string>();
        foreach (var kind in ResourceSchemas.All)
        {
            foreach (var (shape, node) in SchemaSamples.Walk(kind.Spec, "spec"))
            {
                if (!shape.EndsWith(".*", StringComparison.Ordinal) && node.Properties.Count == 0 && node.AdditionalProperties is null)
                {
                    data.Add(kind.Kind, shape);
                }
            }
        }

        return data;
    }

    [Fact]
    public void Every_kind_the_parser_accepts_has_a_schema_and_nothing_else_does()
    {
        Assert.Equal(ResourceParser.KnownKinds.Order(StringComparer.Ordinal), ResourceSchemas.All.Select(k => k.Kind).Order(StringComparer.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void A_document_with_every_schema_field_parses_without_error_or_unknown_field(string kind)
    {
        var asked = new HashSet<string>(StringComparer.Ordinal);
        var result = ResourceParser.ParseText(SchemaSamples.Document(kind, _ => true), kind, asked);

        Assert.Empty(result.Errors);
        Assert.Empty(result.Warnings);
        Assert.Single(result.Resources);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_field_the_parser_reads_is_in_the_schema_and_every_schema_field_is_read(string kind)
    {
        var asked = new HashSet<string>(StringComparer.Ordinal);
        ResourceParser.ParseText(SchemaSamples.Document(kind, _ => true), kind, asked);
        ResourceParser.ParseText(SchemaSamples.Document(kind, _ => true, lastOfExclusive: true), kind, asked); // an excluded subtree's fields (HttpRoute's redirect)
        var read = asked.Where(a => a.StartsWith("spec.", StringComparison.Ordinal)).ToHashSet();
        var schema = SchemaSamples.Walk(ResourceSchemas.Of(kind).Spec, "spec")
            .Select(w => w.Shape)
            .Where(s => s != "spec" && !s.EndsWith(".*", StringComparison.Ordinal) && !s.EndsWith("[]", StringComparison.Ordinal)) // items and map values are not looked up by name
            .ToHashSet();

        Assert.Empty(read.Except(schema).Order(StringComparer.Ordinal)); // the parser reads it, the schema lacks it
        Assert.Empty(schema.Except(read).Order(StringComparer.Ordinal)); // the schema has it, the parser never reads it
    }

    [Theory]
    [MemberData(nameof(Leaves))]
    public void Each_field_alone_parses_with_its_schema_type(string kind, string leaf)
    {
        var result = ResourceParser.ParseText(SchemaSamples.Document(kind, shape => SchemaSamples.IsOnPath(leaf, shape)), kind);

        Assert.Empty(result.Errors);
        Assert.DoesNotContain(result.Warnings, w => w.Reason.Contains("unknown field", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Leaves))]
    public void Each_enum_value_of_the_schema_parses(string kind, string leaf)
    {
        var node = SchemaSamples.Walk(ResourceSchemas.Of(kind).Spec, "spec").First(w => w.Shape == leaf).Node;
        foreach (var value in node.Enum ?? [])
        {
            var text = SchemaSamples.Document(kind, shape => SchemaSamples.IsOnPath(leaf, shape), (leaf, JsonValue.Create(value)));
            Assert.Empty(ResourceParser.ParseText(text, kind).Errors);
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void A_value_of_another_type_is_refused_at_that_field(string kind)
    {
        foreach (var (shape, node) in SchemaSamples.Walk(ResourceSchemas.Of(kind).Spec, "spec"))
        {
            if (shape == "spec" || shape.EndsWith(".*", StringComparison.Ordinal))
            {
                continue;
            }

            JsonNode wrong = node.Type switch
            {
                SchemaType.Mapping or SchemaType.List => JsonValue.Create("x"),
                SchemaType.Text => new JsonObject { ["x"] = 1 },
                _ => JsonValue.Create("not-a-value"), // a number or boolean field refuses text
            };
            var text = SchemaSamples.Document(kind, s => SchemaSamples.IsOnPath(shape, s), (shape, wrong));
            var errors = ResourceParser.ParseText(text, kind).Errors;

            var field = SchemaSamples.FieldPath(ResourceSchemas.Of(kind).Spec, shape);
            Assert.True(errors.Any(e => e.FieldPath == field), $"{kind} {field} ({CrdWriter.OpenApiType(node.Type)}) given {wrong.ToJsonString()}: {string.Join("; ", errors)}");
        }
    }

    [Fact]
    public void The_shipped_crds_are_the_generators_output()
    {
        var shipped = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "crds.yaml"));

        Assert.True(shipped == CrdWriter.Write(), "docker/kubernetes/crds.yaml is stale: regenerate it with `meshproxy crds > docker/kubernetes/crds.yaml`");
    }

    [Fact]
    public void The_sample_configuration_validates_against_the_schemas()
    {
        var checkedDocuments = 0;
        foreach (var file in Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "corpus"), "*.yaml", SearchOption.AllDirectories))
        {
            Assert.True(YamlDocuments.TryLoad(File.ReadAllText(file), file, out var documents, out _));
            foreach (var document in documents)
            {
                if (document.RootNode is not YamlMappingNode root || !root.Children.TryGetValue(new YamlScalarNode("apiVersion"), out var api)
                    || ((YamlScalarNode)api).Value != Resources.Resource.ApiVersion)
                {
                    continue;
                }

                var kind = ((YamlScalarNode)root.Children[new YamlScalarNode("kind")]).Value!;
                var problems = SchemaSamples.Validate(ResourceSchemas.Of(kind).Spec, root.Children[new YamlScalarNode("spec")], "spec");
                Assert.True(problems.Count == 0, $"{file} {kind}: {string.Join("; ", problems)}");
                checkedDocuments++;
            }
        }

        Assert.True(checkedDocuments >= 5);
    }

    [Fact]
    public void The_validator_itself_finds_a_wrong_type_an_unknown_field_and_a_missing_field()
    {
        Assert.True(YamlDocuments.TryLoad("ports: [{ port: eighty, colour: red }]\nhosts: x\n", "t", out var documents, out _));
        var problems = SchemaSamples.Validate(ResourceSchemas.Of("Service").Spec, documents[0].RootNode, "spec");

        Assert.Contains("spec.ports[0].port: expected integer", problems);
        Assert.Contains("spec.ports[0].colour: unknown field", problems);
        Assert.Contains("spec.hosts: expected array", problems);
        Assert.Equal(3, problems.Count);
    }
}
