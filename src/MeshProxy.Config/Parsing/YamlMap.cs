using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.Config.Parsing;

/// <summary>
/// Collects what went wrong while reading one file. Errors make the resource unusable; warnings (an
/// unknown field, say) are reported and tolerated so that an older proxy accepts newer config.
/// </summary>
internal sealed class DiagnosticSink(string file)
{
    public string File { get; } = file;

    public List<ConfigDiagnostic> Errors { get; } = [];

    public List<ConfigDiagnostic> Warnings { get; } = [];

    /// <summary>
    /// When set, every field a reader looks up, by its shape path (spec.ports[].port, headers.*.exact): what the
    /// parser accepts, which the CRD schema test compares with the schema. Null (and free) otherwise.
    /// </summary>
    public HashSet<string>? Asked { get; init; }

    public void Error(YamlNode? node, string path, string reason) =>
        Errors.Add(new ConfigDiagnostic(File, LineOf(node), path, reason));

    public void Warning(YamlNode? node, string path, string reason) =>
        Warnings.Add(new ConfigDiagnostic(File, LineOf(node), path, reason));

    private static int LineOf(YamlNode? node) => node is null ? 0 : (int)node.Start.Line;
}

/// <summary>
/// A YAML mapping being read into a resource. Every accessor takes the field's name, records that the
/// field is known, and reports a typed error (with file, line and dotted field path) when the value is
/// of the wrong shape. <see cref="Finish"/> warns about the fields nobody asked for.
/// </summary>
internal sealed class YamlMap
{
    private readonly YamlMappingNode _node;
    private readonly DiagnosticSink _sink;
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public YamlMap(YamlMappingNode node, string path, DiagnosticSink sink, string? shape = null)
    {
        _node = node;
        Path = path;
        _sink = sink;
        Shape = shape ?? path;
    }

    public string Path { get; }

    /// <summary>The path with list indexes as [] and user-chosen keys as *: the same for every instance of a field.</summary>
    public string Shape { get; }

    private string ShapeChild(string key) => Shape.Length == 0 ? key : $"{Shape}.{key}";

    public int Line => (int)_node.Start.Line;

    public YamlNode Node => _node;

    public DiagnosticSink Sink => _sink;

    public string Child(string key) => Path.Length == 0 ? key : $"{Path}.{key}";

    public bool Has(string key) => Find(key) is not null;

    public YamlNode? Find(string key)
    {
        _read.Add(key);
        _sink.Asked?.Add(ShapeChild(key));
        foreach (var (k, v) in _node.Children)
        {
            if (k is YamlScalarNode s && s.Value == key)
            {
                return v is YamlScalarNode { Value: null or "" or "~" or "null" } sv && sv.Style == YamlDotNet.Core.ScalarStyle.Plain ? null : v;
            }
        }

        return null;
    }

    /// <summary>An error about a field, reported at the line of the field's name (where an operator looks for it).</summary>
    public void Error(string key, string reason) => _sink.Error(FindKey(key) ?? _node, Child(key), reason);

    private YamlNode? FindKey(string key)
    {
        foreach (var (k, _) in _node.Children)
        {
            if (k is YamlScalarNode s && s.Value == key)
            {
                return k;
            }
        }

        return null;
    }

    public string? String(string key, bool required = false)
    {
        var node = Find(key);
        if (node is null)
        {
            if (required)
            {
                _sink.Error(_node, Child(key), "is required");
            }

            return null;
        }

        if (node is not YamlScalarNode scalar)
        {
            _sink.Error(node, Child(key), "must be a string");
            return null;
        }

        if (required && string.IsNullOrEmpty(scalar.Value))
        {
            _sink.Error(node, Child(key), "must not be empty");
            return null;
        }

        return scalar.Value;
    }

    public bool? Bool(string key)
    {
        var node = Find(key);
        if (node is null)
        {
            return null;
        }

        if (node is YamlScalarNode { Value: { } v } && bool.TryParse(v, out var b))
        {
            return b;
        }

        _sink.Error(node, Child(key), "must be true or false");
        return null;
    }

    public long? Integer(string key, long min, long max, bool required = false)
    {
        var node = Find(key);
        if (node is null)
        {
            if (required)
            {
                _sink.Error(_node, Child(key), "is required");
            }

            return null;
        }

        if (node is not YamlScalarNode { Value: { } text } ||
            !long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            _sink.Error(node, Child(key), "must be a whole number");
            return null;
        }

        if (value < min || value > max)
        {
            _sink.Error(node, Child(key), $"must be between {min} and {max}, got {value}");
            return null;
        }

        return value;
    }

    public int? Port(string key, bool required = false, bool allowZero = false) =>
        (int?)Integer(key, allowZero ? 0 : 1, 65535, required);

    public double? Number(string key, double min, double max)
    {
        var node = Find(key);
        if (node is null)
        {
            return null;
        }

        if (node is not YamlScalarNode { Value: { } text } ||
            !double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || double.IsNaN(value))
        {
            _sink.Error(node, Child(key), "must be a number");
            return null;
        }

        if (value < min || value > max)
        {
            _sink.Error(node, Child(key), $"must be between {min} and {max}, got {value}");
            return null;
        }

        return value;
    }

    public TimeSpan? Duration(string key, TimeSpan? min = null, TimeSpan? max = null)
    {
        var text = String(key);
        if (text is null)
        {
            return null;
        }

        if (!Durations.TryParse(text, out var value))
        {
            Error(key, $"'{text}' is not a duration (write it like 250ms, 5s, 1m30s)");
            return null;
        }

        if ((min is { } lo && value < lo) || (max is { } hi && value > hi))
        {
            Error(key, $"must be between {Durations.Format(min ?? TimeSpan.Zero)} and {Durations.Format(max ?? TimeSpan.MaxValue)}");
            return null;
        }

        return value;
    }

    /// <summary>A string that must be one of a closed set; compared case-insensitively, returned as written in the set.</summary>
    public string? Enum(string key, IReadOnlyList<string> allowed, bool required = false)
    {
        var text = String(key, required);
        if (text is null)
        {
            return null;
        }

        foreach (var candidate in allowed)
        {
            if (string.Equals(candidate, text, StringComparison.OrdinalIgnoreCase))
            {
                return candidate;
            }
        }

        Error(key, $"'{text}' is not one of {string.Join(", ", allowed)}");
        return null;
    }

    public YamlMap? Map(string key, bool required = false)
    {
        var node = Find(key);
        if (node is null)
        {
            if (required)
            {
                _sink.Error(_node, Child(key), "is required");
            }

            return null;
        }

        if (node is not YamlMappingNode mapping)
        {
            _sink.Error(node, Child(key), "must be a mapping");
            return null;
        }

        return new YamlMap(mapping, Child(key), _sink, ShapeChild(key));
    }

    /// <summary>The items of a sequence of mappings, each with its indexed path (for example spec.ports[2]).</summary>
    public IReadOnlyList<YamlMap> Maps(string key, bool required = false)
    {
        var node = Find(key);
        if (node is null)
        {
            if (required)
            {
                _sink.Error(_node, Child(key), "is required");
            }

            return [];
        }

        if (node is not YamlSequenceNode sequence)
        {
            _sink.Error(node, Child(key), "must be a list");
            return [];
        }

        var result = new List<YamlMap>(sequence.Children.Count);
        for (var i = 0; i < sequence.Children.Count; i++)
        {
            if (sequence.Children[i] is YamlMappingNode item)
            {
                result.Add(new YamlMap(item, $"{Child(key)}[{i}]", _sink, $"{ShapeChild(key)}[]"));
            }
            else
            {
                _sink.Error(sequence.Children[i], $"{Child(key)}[{i}]", "must be a mapping");
            }
        }

        return result;
    }

    public IReadOnlyList<string> Strings(string key, bool required = false)
    {
        var node = Find(key);
        if (node is null)
        {
            if (required)
            {
                _sink.Error(_node, Child(key), "is required");
            }

            return [];
        }

        if (node is not YamlSequenceNode sequence)
        {
            _sink.Error(node, Child(key), "must be a list of strings");
            return [];
        }

        var result = new List<string>(sequence.Children.Count);
        for (var i = 0; i < sequence.Children.Count; i++)
        {
            if (sequence.Children[i] is YamlScalarNode { Value: { Length: > 0 } value })
            {
                result.Add(value);
            }
            else
            {
                _sink.Error(sequence.Children[i], $"{Child(key)}[{i}]", "must be a non-empty string");
            }
        }

        if (required && result.Count == 0)
        {
            _sink.Error(node, Child(key), "must not be empty");
        }

        return result;
    }

    /// <summary>A mapping of string to string, such as labels.</summary>
    public IReadOnlyDictionary<string, string> StringMap(string key)
    {
        var map = Map(key);
        if (map is null)
        {
            return EmptyStringMap;
        }

        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in map._node.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? string.Empty;
            if (v is YamlScalarNode { Value: { } value })
            {
                result[name] = value;
            }
            else
            {
                _sink.Error(v, map.Child(name), "must be a string");
            }
        }

        return result;
    }

    /// <summary>The entries of a mapping whose keys are names chosen by the user (header names, say).</summary>
    public IReadOnlyList<(string Name, YamlMap Value)> NamedMaps(string key)
    {
        var map = Map(key);
        if (map is null)
        {
            return [];
        }

        var result = new List<(string, YamlMap)>();
        foreach (var (k, v) in map._node.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? string.Empty;
            if (v is YamlMappingNode m)
            {
                result.Add((name, new YamlMap(m, map.Child(name), _sink, map.ShapeChild("*"))));
            }
            else
            {
                _sink.Error(v, map.Child(name), "must be a mapping");
            }
        }

        return result;
    }

    /// <summary>Warns once for each field that no reader asked for: tolerated, for forward compatibility.</summary>
    public void Finish()
    {
        foreach (var (k, v) in _node.Children)
        {
            if (k is YamlScalarNode { Value: { } key } && !_read.Contains(key))
            {
                _sink.Warning(k, Child(key), "unknown field, ignored");
            }
        }
    }

    /// <summary>
    /// Like <see cref="Finish"/>, but an unread field is an error: for input that is not shared config (a pod's own
    /// override), where a misspelt field silently ignored would leave the pod without what it asked for.
    /// </summary>
    public void RejectUnknown()
    {
        foreach (var (k, _) in _node.Children)
        {
            if (k is YamlScalarNode { Value: { } key } && !_read.Contains(key))
            {
                _sink.Error(k, Child(key), "unknown field");
            }
        }
    }

    private static readonly IReadOnlyDictionary<string, string> EmptyStringMap = new Dictionary<string, string>();
}
