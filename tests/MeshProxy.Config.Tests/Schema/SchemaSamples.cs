using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MeshProxy.Config.Schema;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.Config.Tests.Schema;

/// <summary>Documents built from a schema alone (its examples), and a small structural validator of YAML against it.</summary>
internal static partial class SchemaSamples
{
    /// <summary>Every node with its shape path: list items as [], user-chosen keys as *.</summary>
    public static IEnumerable<(string Shape, SchemaNode Node)> Walk(SchemaNode node, string shape)
    {
        yield return (shape, node);
        foreach (var p in node.Properties)
        {
            foreach (var child in Walk(p.Node, $"{shape}.{p.Name}"))
            {
                yield return child;
            }
        }

        if (node.Items is { } items)
        {
            foreach (var child in Walk(items, shape + "[]"))
            {
                yield return child;
            }
        }

        if (node.AdditionalProperties is { } values)
        {
            foreach (var child in Walk(values, shape + ".*"))
            {
                yield return child;
            }
        }
    }

    /// <summary>
    /// True when <paramref name="shape"/> is <paramref name="leaf"/> or one of the fields above it: a whole-segment
    /// prefix, so that selecting spec.x.jwksUri does not also select its sibling spec.x.jwks.
    /// </summary>
    public static bool IsOnPath(string leaf, string shape) =>
        leaf.StartsWith(shape, StringComparison.Ordinal) && (leaf.Length == shape.Length || leaf[shape.Length] is '.' or '[');

    /// <summary>
    /// A document of <paramref name="kind"/> (as JSON, which is YAML) whose spec holds the required fields and those
    /// <paramref name="include"/> selects, each set to its example (or, for <paramref name="replace"/>'s shape, that value).
    /// Of properties that exclude each other only the first is written unless another is selected (the last with
    /// <paramref name="lastOfExclusive"/>, so that a subtree excluded by an earlier one is written too).
    /// </summary>
    public static string Document(string kind, Func<string, bool> include, (string Shape, JsonNode Value)? replace = null, bool lastOfExclusive = false)
    {
        var spec = Build(ResourceSchemas.Of(kind).Spec, "spec", include, replace, lastOfExclusive);
        return new JsonObject
        {
            ["apiVersion"] = Resources.Resource.ApiVersion,
            ["kind"] = kind,
            ["metadata"] = new JsonObject { ["name"] = "sample", ["namespace"] = "default" },
            ["spec"] = spec,
        }.ToJsonString();
    }

    private static JsonNode Build(SchemaNode node, string shape, Func<string, bool> include, (string Shape, JsonNode Value)? replace, bool last = false)
    {
        if (replace is { } r && r.Shape == shape)
        {
            return r.Value.DeepClone();
        }

        switch (node.Type)
        {
            case SchemaType.List:
                return new JsonArray(Build(node.Items!, shape + "[]", include, replace, last));
            case SchemaType.Mapping when node.AdditionalProperties is { } values:
                return new JsonObject { [node.KeyExample] = Build(values, shape + ".*", include, replace, last) };
            case SchemaType.Mapping:
                var result = new JsonObject();
                var chosen = node.Properties
                    .Where(p => node.Required.Contains(p.Name) || include($"{shape}.{p.Name}"))
                    .Select(p => p.Name)
                    .ToList();
                if (node.AtMostOneOf is { } exclusive && chosen.Count(exclusive.Contains) > 1)
                {
                    // Only the whole-document sample selects several at once: it keeps the first.
                    var keep = last ? exclusive.Last(chosen.Contains) : exclusive.First(chosen.Contains);
                    chosen.RemoveAll(n => exclusive.Contains(n) && n != keep);
                }

                if (node.AtLeastOneOf is { } some && !chosen.Any(some.Contains))
                {
                    chosen.Add(some[0]);
                }

                // A dependency adds the property it needs (set to the value it needs, if any); one with When adds it
                // only when the property holds that value (the replacement's, the forced one, or the example).
                var forced = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var dependency in node.Dependencies ?? [])
                {
                    if (!chosen.Contains(dependency.Property))
                    {
                        continue;
                    }

                    if (dependency.When is { } when)
                    {
                        var value = forced.GetValueOrDefault(dependency.Property)
                            ?? (replace is { } rv && rv.Shape == $"{shape}.{dependency.Property}" ? rv.Value.ToString() : node.Property(dependency.Property)?.Example);
                        if (value != when)
                        {
                            continue;
                        }
                    }
                    else if (dependency.NeedsValue is { } needed)
                    {
                        forced[dependency.Needs] = needed;
                    }

                    if (!chosen.Contains(dependency.Needs))
                    {
                        chosen.Add(dependency.Needs);
                    }
                }

                foreach (var p in node.Properties.Where(p => chosen.Contains(p.Name)))
                {
                    var childShape = $"{shape}.{p.Name}";
                    result[p.Name] = forced.TryGetValue(p.Name, out var value) && replace?.Shape != childShape
                        ? JsonValue.Create(value)
                        : Build(p.Node, childShape, include, replace, last);
                }

                return result;
            case SchemaType.Text:
                return JsonValue.Create(node.Example ?? throw new InvalidOperationException($"{shape} has no example"));
            default:
                return JsonNode.Parse(node.Example ?? throw new InvalidOperationException($"{shape} has no example"))!;
        }
    }

    /// <summary>The field path of a shape in a document built by <see cref="Document"/>: list items [0], map keys their example.</summary>
    public static string FieldPath(SchemaNode root, string shape)
    {
        var node = root;
        var parts = shape.Split('.');
        var path = new List<string> { parts[0] };
        foreach (var part in parts.Skip(1))
        {
            if (part == "*")
            {
                path.Add(node.KeyExample);
                node = node.AdditionalProperties!;
                continue;
            }

            var name = part.TrimEnd('[', ']');
            node = node.Property(name)!;
            if (part.EndsWith("[]", StringComparison.Ordinal))
            {
                path.Add(name + "[0]");
                node = node.Items!;
            }
            else
            {
                path.Add(name);
            }
        }

        return string.Join('.', path);
    }

    /// <summary>What an API server's structural validation would say about <paramref name="value"/> (types, enums, bounds, required, unknown fields).</summary>
    public static List<string> Validate(SchemaNode node, YamlNode value, string path)
    {
        var problems = new List<string>();
        Check(node, value, path, problems);
        return problems;
    }

    private static void Check(SchemaNode node, YamlNode value, string path, List<string> problems)
    {
        switch (node.Type)
        {
            case SchemaType.Mapping when value is YamlMappingNode map:
                foreach (var required in node.Required.Where(r => !map.Children.ContainsKey(new YamlScalarNode(r))))
                {
                    problems.Add($"{path}.{required}: required");
                }

                foreach (var (k, v) in map.Children)
                {
                    var name = ((YamlScalarNode)k).Value!;
                    var child = node.AdditionalProperties ?? node.Property(name);
                    if (child is null)
                    {
                        problems.Add($"{path}.{name}: unknown field");
                    }
                    else
                    {
                        Check(child, v, $"{path}.{name}", problems);
                    }
                }

                break;
            case SchemaType.List when value is YamlSequenceNode list:
                for (var i = 0; i < list.Children.Count; i++)
                {
                    Check(node.Items!, list.Children[i], $"{path}[{i}]", problems);
                }

                break;
            case SchemaType.Mapping or SchemaType.List:
                problems.Add($"{path}: expected {CrdWriter.OpenApiType(node.Type)}");
                break;
            default:
                if (value is not YamlScalarNode scalar || ScalarType(scalar) is not { } type || !Fits(node.Type, type))
                {
                    problems.Add($"{path}: expected {CrdWriter.OpenApiType(node.Type)}");
                }
                else if (node.Enum is { } allowed && !allowed.Contains(scalar.Value!))
                {
                    problems.Add($"{path}: '{scalar.Value}' not in enum");
                }
                else if (node.Pattern is { } pattern && !Regex.IsMatch(scalar.Value!, pattern))
                {
                    problems.Add($"{path}: '{scalar.Value}' does not match {pattern}");
                }

                break;
        }
    }

    private static bool Fits(SchemaType expected, SchemaType actual) =>
        expected == actual || (expected == SchemaType.Number && actual == SchemaType.Whole);

    // YAML 1.2 core schema, as the API server would see the value once kubectl has turned the YAML into JSON.
    private static SchemaType? ScalarType(YamlScalarNode scalar)
    {
        if (scalar.Style != YamlDotNet.Core.ScalarStyle.Plain)
        {
            return SchemaType.Text;
        }

        var text = scalar.Value ?? string.Empty;
        return text switch
        {
            "true" or "false" => SchemaType.Boolean,
            "null" or "~" or "" => null,
            _ when WholeNumber().IsMatch(text) => SchemaType.Whole,
            _ when FloatNumber().IsMatch(text) => SchemaType.Number,
            _ => SchemaType.Text,
        };
    }

    [GeneratedRegex("^[-+]?[0-9]+$")]
    private static partial Regex WholeNumber();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")]
    private static partial Regex FloatNumber();
}
