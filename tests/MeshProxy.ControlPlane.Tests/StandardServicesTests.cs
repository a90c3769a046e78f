using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Grpc.Reflection.V1Alpha;
using MeshProxy.Api.V1;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests;

/// <summary>What any gRPC tool expects of a server, over a real h2c connection: grpc.health.v1, reflection, UNIMPLEMENTED.</summary>
public sealed class StandardServicesTests
{
    [Fact]
    public async Task Health_says_serving_and_reflection_lists_and_describes_the_mesh_services()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var cp = await TestControlPlane.StartAsync();
        using var channel = GrpcChannel.ForAddress(cp.GrpcUri);

        var health = await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);

        using var reflection = new ServerReflection.ServerReflectionClient(channel).ServerReflectionInfo(cancellationToken: ct);
        await reflection.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = string.Empty }, ct);
        Assert.True(await reflection.ResponseStream.MoveNext(ct));
        var services = reflection.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("meshproxy.v1.ConfigDiscovery", services);
        Assert.Contains("grpc.health.v1.Health", services);
        // No CA configured: its service is not offered.
        Assert.DoesNotContain("meshproxy.v1.Certificates", services);

        // A tool (grpcurl, Postman) gets the descriptor of discovery.proto from the symbol alone.
        await reflection.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = "meshproxy.v1.ConfigDiscovery" }, ct);
        Assert.True(await reflection.ResponseStream.MoveNext(ct));
        var file = Google.Protobuf.Reflection.FileDescriptorProto.Parser.ParseFrom(reflection.ResponseStream.Current.FileDescriptorResponse.FileDescriptorProto[0]);
        Assert.Equal("meshproxy/v1/discovery.proto", file.Name);
        Assert.Contains(file.Service.Single().Method, m => m.Name == "StreamSnapshots" && m.ClientStreaming && m.ServerStreaming);
        await reflection.RequestStream.CompleteAsync();
    }

    [Fact]
    public async Task A_service_the_control_plane_does_not_offer_is_unimplemented()
    {
        await using var cp = await TestControlPlane.StartAsync();
        using var channel = GrpcChannel.ForAddress(cp.GrpcUri);
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
            await new Api.V1.Certificates.CertificatesClient(channel).CreateCertificateAsync(new CreateCertificateRequest(), cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.Unimplemented, error.StatusCode);
    }
}
