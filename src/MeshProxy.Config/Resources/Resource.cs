namespace MeshProxy.Config.Resources;

/// <summary>Where a resource came from, so that every later message can point back at the file.</summary>
public sealed record SourceLocation(string File, int Line)
{
    public override string ToString() => $"{File}:{Line}";
}

/// <summary>Kubernetes-style object metadata.</summary>
public sealed record ObjectMeta(
    string Name,
    string Namespace,
    IReadOnlyDictionary<string, string> Labels,
    IReadOnlyDictionary<string, string> Annotations);

/// <summary>
/// A configuration resource as an operator writes it (apiVersion, kind, metadata, spec). Immutable;
/// the sidecar and the control plane each build their own runtime model from these.
/// </summary>
public abstract record Resource(ObjectMeta Metadata, SourceLocation Source)
{
    public const string ApiVersion = "meshproxy.io/v1alpha1";

    public abstract string Kind { get; }

    /// <summary>Kind/namespace/name: unique within one configuration.</summary>
    public string Key => $"{Kind}/{Metadata.Namespace}/{Metadata.Name}";
}

/// <summary>Application protocols, named as Istio names them on service ports.</summary>
public enum AppProtocol
{
    Http,
    Http2,
    Grpc,
    Tcp,
    Tls,
    Https,
}

public static class AppProtocols
{
    public static readonly IReadOnlyList<string> Names = ["HTTP", "HTTP2", "GRPC", "TCP", "TLS", "HTTPS"];

    public static AppProtocol Parse(string? name) => name?.ToUpperInvariant() switch
    {
        null or "HTTP" => AppProtocol.Http,
        "HTTP2" => AppProtocol.Http2,
        "GRPC" => AppProtocol.Grpc,
        "TCP" => AppProtocol.Tcp,
        "TLS" => AppProtocol.Tls,
        "HTTPS" => AppProtocol.Https,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown protocol"),
    };

    /// <summary>The name as written in configuration (HTTP, HTTP2, GRPC, ...).</summary>
    public static string ToName(this AppProtocol protocol) => Names[(int)protocol];

    /// <summary>True when the upstream must be spoken to in HTTP/2 (gRPC needs trailers, which HTTP/1.1 lacks).</summary>
    public static bool IsHttp2(this AppProtocol protocol) => protocol is AppProtocol.Http2 or AppProtocol.Grpc;
}
