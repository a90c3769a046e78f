using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using MeshProxy.ControlPlane.Tests.Infrastructure;

namespace MeshProxy.ControlPlane.Tests;

/// <summary>Hand-made gRPC requests over HTTP/2 (no gRPC library): clear statuses, and the control plane goes on.</summary>
public sealed class RawHttp2BadInputTests
{
    private static async Task<(string Status, string Message)> PostAsync(TestControlPlane cp, byte[] body)
    {
        using var http = new HttpClient(new SocketsHttpHandler()) { Timeout = TimeSpan.FromSeconds(10) };
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(cp.GrpcUri, "/meshproxy.v1.ConfigDiscovery/StreamSnapshots"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        using var response = await http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        string? Get(string name) =>
            response.Headers.TryGetValues(name, out var h) ? h.First() :
            response.TrailingHeaders.TryGetValues(name, out var t) ? t.First() : null;
        return (Get("grpc-status") ?? "none", Uri.UnescapeDataString(Get("grpc-message") ?? string.Empty));
    }

    [Fact]
    public async Task Malformed_frame_and_oversized_message_get_clear_errors_and_the_control_plane_goes_on()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "s.yaml", Yaml.Service("cart", "shop", 80, 9001));
        await using var cp = await TestControlPlane.StartAsync(dir);

        // Compressed flag 7 (only 0 and 1 exist), then garbage.
        var malformed = await PostAsync(cp, [7, 0, 0, 0, 3, 1, 2, 3]);
        Assert.Equal("13", malformed.Status);
        Assert.NotEmpty(malformed.Message);

        // A frame whose header announces 64 MiB: refused from the header, before any body is buffered.
        var oversized = new byte[5];
        BinaryPrimitives.WriteUInt32BigEndian(oversized.AsSpan(1), 64u << 20);
        var tooBig = await PostAsync(cp, [.. oversized, .. new byte[1024]]);
        Assert.Equal("8", tooBig.Status);
        Assert.Contains("exceeds the maximum configured message size", tooBig.Message, StringComparison.Ordinal);

        // Truncated frame: header says 100 bytes, body ends after 3.
        var truncated = await PostAsync(cp, [0, 0, 0, 0, 100, 1, 2, 3]);
        Assert.Equal("13", truncated.Status);

        // A valid-length frame that is not a SnapshotRequest.
        var garbage = await PostAsync(cp, [0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
        Assert.Equal("13", garbage.Status);

        await using var client = cp.Connect("web", "shop");
        await client.NextSnapshotAsync();
        Assert.Contains("meshproxy_controlplane_connected_sidecars 1", await cp.MetricsAsync());
    }
}
