namespace MeshProxy.Metrics;

/// <summary>
/// The label values of one series, as a struct so that looking a series up costs no allocation.
/// <see cref="GetValue"/> must return the same string instance for the same logical value whenever the
/// caller can arrange it (interned per config snapshot): the series is then found by reference and no
/// characters are hashed.
/// </summary>
internal interface ILabelSet
{
    /// <summary>How many values; equals the family's number of label names.</summary>
    int Count { get; }

    /// <summary>The value at <paramref name="index"/>, in the family's label-name order. Never null.</summary>
    string GetValue(int index);
}
