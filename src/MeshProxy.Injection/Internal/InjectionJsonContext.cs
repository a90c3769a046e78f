using System.Text.Json.Serialization;

namespace MeshProxy.Injection;

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(StatusAnnotation))]
[JsonSerializable(typeof(string))]
internal sealed partial class InjectionJsonContext : JsonSerializerContext;
