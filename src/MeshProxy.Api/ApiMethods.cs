namespace MeshProxy.Api.V1;

/// <summary>
/// gRPC method paths ("/package.Service/Method") of the mesh API. The protos are compiled without
/// service stubs, so these constants are the one place the paths are spelled; a test checks them
/// against the compiled descriptors.
/// </summary>
public static class ApiMethods
{
    public const string StreamSnapshots = "/meshproxy.v1.ConfigDiscovery/StreamSnapshots";
    public const string CreateCertificate = "/meshproxy.v1.Certificates/CreateCertificate";

    /// <summary>The standard gRPC health check (protos/grpc/health/v1), which the sidecar calls for the app's grpc probes.</summary>
    public const string HealthCheck = "/grpc.health.v1.Health/Check";
}
