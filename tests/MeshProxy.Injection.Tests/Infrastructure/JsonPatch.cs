using System.Text.Json.Nodes;

namespace MeshProxy.Injection.Tests.Infrastructure;

/// <summary>A small RFC 6902 applier (add, remove, replace, test), independent of the code that writes patches.</summary>
internal static class JsonPatch
{
    public static JsonNode Apply(JsonNode document, JsonArray patch)
    {
        var root = document.DeepClone();
        foreach (var op in patch.Select(o => o!.AsObject()))
        {
            var path = op["path"]!.GetValue<string>();
            var value = op["value"]?.DeepClone();
            var kind = op["op"]!.GetValue<string>();
            if (path.Length == 0)
            {
                Assert.True(kind == "replace", $"{kind} at the root");
                root = value!;
                continue;
            }

            var tokens = path[1..].Split('/').Select(t => t.Replace("~1", "/").Replace("~0", "~")).ToArray();
            var parent = tokens[..^1].Aggregate(root, (node, token) => node is JsonArray a ? a[int.Parse(token)]! : node[token] ?? throw new InvalidOperationException($"{path}: '{token}' does not exist"));
            var last = tokens[^1];
            switch (kind, parent)
            {
                case ("add", JsonArray array):
                    if (last == "-") array.Add(value); else array.Insert(int.Parse(last), value);
                    break;
                case ("add", JsonObject obj):
                    obj[last] = value;
                    break;
                case ("replace", JsonArray array):
                    array[int.Parse(last)] = value;
                    break;
                case ("replace", JsonObject obj):
                    Assert.True(obj.ContainsKey(last), $"replace of a missing member {path}");
                    obj[last] = value;
                    break;
                case ("remove", JsonArray array):
                    array.RemoveAt(int.Parse(last));
                    break;
                case ("remove", JsonObject obj):
                    Assert.True(obj.Remove(last), $"remove of a missing member {path}");
                    break;
                case ("test", _):
                    Assert.True(JsonNode.DeepEquals(parent is JsonArray t ? t[int.Parse(last)] : parent[last], value), $"test failed at {path}");
                    break;
                default:
                    throw new InvalidOperationException($"unsupported op {kind} at {path}");
            }
        }

        return root;
    }
}
