using System.Collections;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;

namespace MeshProxy.ControlPlane.Tests.Infrastructure;

/// <summary>
/// Compares two object graphs field by field: every instance field, public or private, through base types and
/// collections, so a test built on it notices a field added later without anyone listing it. Types that hold
/// live state rather than configuration (counters, connection pools) and named paths can be left out.
/// </summary>
internal sealed class ObjectGraph(IReadOnlySet<Type> skippedTypes, IReadOnlySet<string> skippedPaths)
{
    private const int MaxDepth = 64;

    /// <summary>Where the two graphs differ, one line per difference, each with its path (empty when they are equal).</summary>
    public List<string> Differences(object? expected, object? actual, string root)
    {
        var differences = new List<string>();
        Compare(expected, actual, root, 0, differences, new HashSet<(object, object)>(PairComparer.Instance));
        return differences;
    }

    private void Compare(object? a, object? b, string path, int depth, List<string> differences, HashSet<(object, object)> seen)
    {
        if (skippedPaths.Contains(path) || ReferenceEquals(a, b))
        {
            return;
        }

        if (a is null || b is null)
        {
            differences.Add($"{path}: {Show(a)} vs {Show(b)}");
            return;
        }

        var type = a.GetType();
        if (type != b.GetType())
        {
            differences.Add($"{path}: a {type} vs a {b.GetType()}");
            return;
        }

        if (skippedTypes.Any(t => t.IsAssignableFrom(type)))
        {
            return;
        }

        if (IsValueLike(type))
        {
            if (!a.Equals(b))
            {
                differences.Add($"{path}: {Show(a)} vs {Show(b)}");
            }

            return;
        }

        switch (a)
        {
            case Regex ra:
                var rb = (Regex)b;
                if (ra.ToString() != rb.ToString() || ra.Options != rb.Options || ra.MatchTimeout != rb.MatchTimeout)
                {
                    differences.Add($"{path}: /{ra}/ vs /{rb}/");
                }

                return;
            case Delegate da:
                if (da.Method != ((Delegate)b).Method)
                {
                    differences.Add($"{path}: delegate to {da.Method} vs {((Delegate)b).Method}");
                }

                return;
        }

        if (depth > MaxDepth)
        {
            differences.Add($"{path}: deeper than {MaxDepth} levels");
            return;
        }

        if (!type.IsValueType && !seen.Add((a, b)))
        {
            return;
        }

        if (a is IEnumerable ea && TryList(ea, out var la) && TryList((IEnumerable)b, out var lb))
        {
            if (la.Count != lb.Count)
            {
                differences.Add($"{path}: {la.Count} items vs {lb.Count}");
                return;
            }

            for (var i = 0; i < la.Count; i++)
            {
                Compare(la[i], lb[i], $"{path}[{i}]", depth + 1, differences, seen);
            }

            return;
        }

        for (var t = type; t is not null && t != typeof(object); t = t.BaseType)
        {
            foreach (var field in t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                Compare(field.GetValue(a), field.GetValue(b), $"{path}.{Name(field)}", depth + 1, differences, seen);
            }
        }
    }

    private static bool IsValueLike(Type type) =>
        type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal) || type == typeof(DateTime) ||
        type == typeof(DateTimeOffset) || type == typeof(TimeSpan) || type == typeof(Guid) || type == typeof(Uri) ||
        typeof(MemberInfo).IsAssignableFrom(type) || type == typeof(System.Net.IPAddress) || type == typeof(System.Net.IPEndPoint);

    /// <summary>The items, or false for a collection that cannot be enumerated in this state (a default ImmutableArray).</summary>
    private static bool TryList(IEnumerable items, out List<object?> list)
    {
        list = [];
        try
        {
            foreach (var item in items)
            {
                list.Add(item);
            }

            return true;
        }
        catch (Exception ex) when (ex is NullReferenceException or InvalidOperationException or NotSupportedException)
        {
            return false;
        }
    }

    /// <summary>An auto-property's backing field by its property's name.</summary>
    private static string Name(FieldInfo field) =>
        field.Name.StartsWith('<') && field.Name.IndexOf('>') is > 1 and var end ? field.Name[1..end] : field.Name;

    private static string Show(object? value) => value is null ? "null" : $"'{value}'";

    private sealed class PairComparer : IEqualityComparer<(object, object)>
    {
        public static readonly PairComparer Instance = new();

        public bool Equals((object, object) x, (object, object) y) => ReferenceEquals(x.Item1, y.Item1) && ReferenceEquals(x.Item2, y.Item2);

        public int GetHashCode((object, object) pair) => HashCode.Combine(RuntimeHelpers.GetHashCode(pair.Item1), RuntimeHelpers.GetHashCode(pair.Item2));
    }
}
