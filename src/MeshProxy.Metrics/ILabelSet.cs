namespace MeshProxy.Metrics;

/// <summary>
/// The label values of one series, as a struct so that looking a series up costs no allocation.
/// <see cref="GetValue"/> must return the same string instance for the same logical value whenever the
/// caller can arrange it (interned per config snapshot): the registry then finds the series by reference
/// and never hashes the characters.
/// </summary>
public interface ILabelSet
{
    /// <summary>How many values; equals the family's number of label names.</summary>
    int Count { get; }

    /// <summary>The value at <paramref name="index"/>, in the family's label-name order. Never null.</summary>
    string GetValue(int index);
}

/// <summary>One label value (null is taken as empty).</summary>
public readonly struct LabelSet1(string? value0) : ILabelSet
{
    private readonly string _value0 = value0 ?? string.Empty;

    public int Count => 1;

    public string GetValue(int index) => index == 0 ? _value0 : throw new ArgumentOutOfRangeException(nameof(index));
}

/// <summary>Two label values.</summary>
public readonly struct LabelSet2(string? value0, string? value1) : ILabelSet
{
    private readonly string _value0 = value0 ?? string.Empty;
    private readonly string _value1 = value1 ?? string.Empty;

    public int Count => 2;

    public string GetValue(int index) => index switch
    {
        0 => _value0,
        1 => _value1,
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };
}

/// <summary>Three label values.</summary>
public readonly struct LabelSet3(string? value0, string? value1, string? value2) : ILabelSet
{
    private readonly string _value0 = value0 ?? string.Empty;
    private readonly string _value1 = value1 ?? string.Empty;
    private readonly string _value2 = value2 ?? string.Empty;

    public int Count => 3;

    public string GetValue(int index) => index switch
    {
        0 => _value0,
        1 => _value1,
        2 => _value2,
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };
}

/// <summary>Four label values.</summary>
public readonly struct LabelSet4(string? value0, string? value1, string? value2, string? value3) : ILabelSet
{
    private readonly string _value0 = value0 ?? string.Empty;
    private readonly string _value1 = value1 ?? string.Empty;
    private readonly string _value2 = value2 ?? string.Empty;
    private readonly string _value3 = value3 ?? string.Empty;

    public int Count => 4;

    public string GetValue(int index) => index switch
    {
        0 => _value0,
        1 => _value1,
        2 => _value2,
        3 => _value3,
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };
}
