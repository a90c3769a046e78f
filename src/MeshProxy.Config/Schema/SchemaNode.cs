namespace MeshProxy.Config.Schema;

/// <summary>OpenAPI's types (string, integer, number, boolean, object, array), named so as not to shadow .NET's.</summary>
public enum SchemaType
{
    Text,
    Whole,
    Number,
    Boolean,
    Mapping,
    List,
}

/// <summary>
/// One node of a resource's OpenAPI v3 schema, as the CRDs publish it (structural: every node typed). Each leaf
/// carries an <see cref="Example"/> the parser accepts, so that the schema tests can build documents from the
/// schema alone and check the parser agrees with it field by field.
/// </summary>
public sealed record SchemaNode(SchemaType Type, string Description)
{
    public IReadOnlyList<SchemaProperty> Properties { get; init; } = [];

    public IReadOnlyList<string> Required { get; init; } = [];

    public SchemaNode? Items { get; init; }

    /// <summary>A map whose keys the user chooses (labels, header names): the schema of every value.</summary>
    public SchemaNode? AdditionalProperties { get; init; }

    /// <summary>A key of such a map the parser accepts (a port number, say), for documents built from the schema.</summary>
    public string KeyExample { get; init; } = "x-key";

    public IReadOnlyList<string>? Enum { get; init; }

    public double? Minimum { get; init; }

    public double? Maximum { get; init; }

    public string? Pattern { get; init; }

    /// <summary>Properties of which at least one must be set (a CEL rule for the API server, as the parser requires).</summary>
    public IReadOnlyList<string>? AtLeastOneOf { get; init; }

    /// <summary>Properties of which at most one may be set (a CEL rule for the API server, as the parser requires).</summary>
    public IReadOnlyList<string>? AtMostOneOf { get; init; }

    /// <summary>Properties that may be set only with another one (a CEL rule for the API server, as the parser requires).</summary>
    public IReadOnlyList<SchemaDependency>? Dependencies { get; init; }

    /// <summary>A value of this leaf the parser accepts; for strings the text, for others the JSON literal.</summary>
    public string? Example { get; init; }

    public SchemaNode? Property(string name) => Properties.FirstOrDefault(p => p.Name == name)?.Node;
}

public sealed record SchemaProperty(string Name, SchemaNode Node);

/// <summary>
/// <see cref="Property"/> may be set only when <see cref="Needs"/> is (and, with <see cref="NeedsValue"/>, holds that
/// value). With <see cref="When"/>, the other way round for one value: when <see cref="Property"/> holds
/// <see cref="When"/>, <see cref="Needs"/> must be set (action CUSTOM needs a provider).
/// </summary>
public sealed record SchemaDependency(string Property, string Needs, string Message)
{
    public string? NeedsValue { get; init; }

    public string? When { get; init; }

    /// <summary>The CEL rule the CRD carries for it.</summary>
    public string Rule => When is { } when
        ? $"!has(self.{Property}) || self.{Property} != '{when}' || has(self.{Needs})"
        : NeedsValue is { } value
            ? $"!has(self.{Property}) || (has(self.{Needs}) && self.{Needs} == '{value}')"
            : $"!has(self.{Property}) || has(self.{Needs})";
}

/// <summary>A kubectl column: its name, JSONPath and type (string, integer, date).</summary>
public sealed record PrinterColumn(string Name, string JsonPath, string Type, string Description);

/// <summary>One resource kind as a CustomResourceDefinition publishes it.</summary>
public sealed record KindSchema(
    string Kind,
    string Plural,
    IReadOnlyList<string> ShortNames,
    string Description,
    SchemaNode Spec,
    IReadOnlyList<PrinterColumn> Columns);
