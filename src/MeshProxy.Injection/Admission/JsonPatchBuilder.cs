using System.Text.Json.Nodes;

namespace MeshProxy.Injection.Admission;

/// <summary>
/// An RFC 6902 patch that turns one JSON document into another. Objects are compared key by key;
/// an array that only gained elements gets "add" operations at their indexes (so a patch inserting
/// the init step before the pod's own init containers does not restate them); any other change to an
/// array replaces it whole.
/// </summary>
internal static class JsonPatchBuilder
{
    public static JsonArray Diff(JsonNode? before, JsonNode? after)
    {
        var ops = new JsonArray();
        Compare(before, after, string.Empty, ops);
        return ops;
    }

    private static void Compare(JsonNode? before, JsonNode? after, string path, JsonArray ops)
    {
        if (JsonNode.DeepEquals(before, after))
        {
            return;
        }

        if (before is JsonObject a && after is JsonObject b)
        {
            foreach (var (key, value) in a)
            {
                if (!b.ContainsKey(key))
                {
                    ops.Add(Op("remove", path + "/" + Escape(key)));
                }
                else
                {
                    Compare(value, b[key], path + "/" + Escape(key), ops);
                }
            }

            foreach (var (key, value) in b)
            {
                if (!a.ContainsKey(key))
                {
                    ops.Add(Op("add", path + "/" + Escape(key), value));
                }
            }

            return;
        }

        if (before is JsonArray x && after is JsonArray y && OnlyInsertions(x, y) is { } inserted)
        {
            foreach (var index in inserted)
            {
                ops.Add(Op("add", $"{path}/{index}", y[index]));
            }

            return;
        }

        ops.Add(Op("replace", path, after));
    }

    /// <summary>The indexes of <paramref name="after"/> that are new, if <paramref name="before"/> is the rest in order.</summary>
    private static List<int>? OnlyInsertions(JsonArray before, JsonArray after)
    {
        var inserted = new List<int>();
        var i = 0;
        for (var j = 0; j < after.Count; j++)
        {
            if (i < before.Count && JsonNode.DeepEquals(before[i], after[j]))
            {
                i++;
            }
            else
            {
                inserted.Add(j);
            }
        }

        return i == before.Count ? inserted : null;
    }

    private static JsonObject Op(string op, string path, JsonNode? value = null)
    {
        var result = new JsonObject { ["op"] = op, ["path"] = path };
        if (op != "remove")
        {
            result["value"] = value?.DeepClone();
        }

        return result;
    }

    /// <summary>RFC 6901: "~" and "/" inside a key ("sidecar.meshproxy.io/status") are escaped.</summary>
    private static string Escape(string key) => key.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);
}
