using System.Runtime.CompilerServices;

namespace MeshProxy.Metrics.Internal;

/// <summary>Equal when every value is the same string instance: cheap, and right for interned values.</summary>
internal sealed class LabelIdentityComparer<TKey> : IEqualityComparer<TKey>
    where TKey : struct, ILabelSet
{
    public static readonly LabelIdentityComparer<TKey> Instance = new();

    public bool Equals(TKey x, TKey y)
    {
        var count = x.Count;
        for (var i = 0; i < count; i++)
        {
            if (!ReferenceEquals(x.GetValue(i), y.GetValue(i)))
            {
                return false;
            }
        }

        return true;
    }

    public int GetHashCode(TKey obj)
    {
        var hash = default(HashCode);
        var count = obj.Count;
        for (var i = 0; i < count; i++)
        {
            hash.Add(RuntimeHelpers.GetHashCode(obj.GetValue(i)));
        }

        return hash.ToHashCode();
    }
}

/// <summary>Equal when every value has the same characters: the source of truth for which series exist.</summary>
internal sealed class LabelValueComparer<TKey> : IEqualityComparer<TKey>
    where TKey : struct, ILabelSet
{
    public static readonly LabelValueComparer<TKey> Instance = new();

    public bool Equals(TKey x, TKey y)
    {
        var count = x.Count;
        for (var i = 0; i < count; i++)
        {
            if (!string.Equals(x.GetValue(i), y.GetValue(i), StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    public int GetHashCode(TKey obj)
    {
        var hash = default(HashCode);
        var count = obj.Count;
        for (var i = 0; i < count; i++)
        {
            hash.Add(obj.GetValue(i)?.GetHashCode(StringComparison.Ordinal) ?? 0);
        }

        return hash.ToHashCode();
    }
}
