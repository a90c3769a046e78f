namespace MeshProxy.Config.Parsing;

/// <summary>One problem found in a configuration file: where it is, which field, and why.</summary>
public sealed record ConfigDiagnostic(string File, int Line, string FieldPath, string Reason)
{
    public override string ToString() =>
        FieldPath.Length == 0 ? $"{File}:{Line}: {Reason}" : $"{File}:{Line}: {FieldPath}: {Reason}";
}

/// <summary>Thrown when a configuration cannot be used; carries every error found, not just the first.</summary>
public sealed class ConfigException : Exception
{
    public ConfigException(IReadOnlyList<ConfigDiagnostic> errors)
        : base(string.Join(Environment.NewLine, errors))
    {
        Errors = errors;
    }

    public IReadOnlyList<ConfigDiagnostic> Errors { get; }
}
