using MeshProxy.Api.V1;
using MeshProxy.Grpc.Client;
using MeshProxy.Grpc.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Grpc.Tests;

public sealed class ApiProtoTests
{
    [Fact]
    public void Method_paths_match_the_compiled_descriptors()
    {
        var discovery = Assert.Single(DiscoveryReflection.Descriptor.Services);
        var ca = Assert.Single(CaReflection.Descriptor.Services);

        Assert.Equal(ApiMethods.StreamSnapshots, $"/{discovery.FullName}/{Assert.Single(discovery.Methods).Name}");
        Assert.Equal(ApiMethods.CreateCertificate, $"/{ca.FullName}/{Assert.Single(ca.Methods).Name}");
        Assert.True(Assert.Single(discovery.Methods).IsClientStreaming && discovery.Methods[0].IsServerStreaming);

        // The health check is the standard's: its path and its messages' wire shape are fixed by apps' own copies.
        var health = Assert.Single(MeshProxy.Api.Health.V1.HealthReflection.Descriptor.Services);
        Assert.Equal(ApiMethods.HealthCheck, $"/{health.FullName}/{Assert.Single(health.Methods).Name}");
        Assert.Equal(1, MeshProxy.Api.Health.V1.HealthCheckRequest.ServiceFieldNumber);
        Assert.Equal(1, MeshProxy.Api.Health.V1.HealthCheckResponse.StatusFieldNumber);
        Assert.Equal([0, 1, 2, 3], Enum.GetValues<MeshProxy.Api.Health.V1.HealthCheckResponse.Types.ServingStatus>().Select(s => (int)s));
    }

    /// <summary>The discovery handshake (request, snapshot, ACK, NACK) over this layer, h2c.</summary>
    [Fact]
    public async Task Snapshot_stream_carries_ack_and_nack()
    {
        var received = new List<SnapshotRequest>();
        var grpc = new GrpcServerBuilder()
            .AddDuplexStreaming<SnapshotRequest, Snapshot>(ApiMethods.StreamSnapshots, SnapshotRequest.Parser, async (requests, writer, context) =>
            {
                var version = 0;
                await foreach (var request in requests)
                {
                    received.Add(request);
                    if (request.ErrorDetail is null)
                    {
                        version++;
                        await writer.WriteAsync(new Snapshot
                        {
                            VersionInfo = $"v{version}",
                            Nonce = $"n{version}",
                            Resources = { new ConfigResource { Kind = "Service", Namespace = "default", Name = "web", Version = "1", Yaml = "kind: Service" } },
                        });
                    }
                }
            })
            .Build();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
        await using var app = builder.Build();
        app.Run(grpc.HandleAsync);
        await app.StartAsync(TestContext.Current.CancellationToken);
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single());

        using var client = new GrpcClient(address);
        var options = new GrpcCallOptions { Deadline = DateTimeOffset.UtcNow.AddSeconds(20), CancellationToken = TestContext.Current.CancellationToken };
        await using (var call = client.StartDuplex<SnapshotRequest, Snapshot>(ApiMethods.StreamSnapshots, Snapshot.Parser, options))
        {
            await call.WriteAsync(new SnapshotRequest { Node = new Node { Workload = "web", Namespace = "default", InstanceId = "web-1", Labels = { ["app"] = "web" } } }, TestContext.Current.CancellationToken);
            var first = await call.ReadAsync(TestContext.Current.CancellationToken);
            Assert.Equal("v1", first!.VersionInfo);
            Assert.Equal("kind: Service", Assert.Single(first.Resources).Yaml);

            await call.WriteAsync(new SnapshotRequest { VersionInfo = "v1", ResponseNonce = "n1" }, TestContext.Current.CancellationToken);
            var second = await call.ReadAsync(TestContext.Current.CancellationToken);
            Assert.Equal("n2", second!.Nonce);

            await call.WriteAsync(new SnapshotRequest { VersionInfo = "v1", ResponseNonce = "n2", ErrorDetail = new Status { Code = 3, Message = "bad route" } }, TestContext.Current.CancellationToken);
            await call.CompleteRequestAsync();
            Assert.Null(await call.ReadAsync(TestContext.Current.CancellationToken));
        }

        Assert.Equal(3, received.Count);
        Assert.Equal("web-1", received[0].Node.InstanceId);
        Assert.Equal("app", Assert.Single(received[0].Node.Labels).Key);
        Assert.Equal(("v1", "n1"), (received[1].VersionInfo, received[1].ResponseNonce));
        Assert.Equal("bad route", received[2].ErrorDetail.Message);
        await app.StopAsync(TestContext.Current.CancellationToken);
    }
}
