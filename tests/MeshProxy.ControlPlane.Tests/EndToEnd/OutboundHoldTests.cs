using System.Net;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Samples.App;
using MeshProxy.Sidecar.Pipelines;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace MeshProxy.ControlPlane.Tests.EndToEnd;

/// <summary>
/// Issue 14, finding 5, in control-plane mode: a request the app makes before the sidecar's first snapshot
/// is held until the snapshot arrives (then forwarded), or answered 503 SNR once the hold passes.
/// </summary>
public sealed class OutboundHoldTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(90) };

    private static Task<HttpResponseMessage> SendAsync(InProcessSidecar sidecar, string host)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, "/"));
        request.Headers.Host = host;
        return Http.SendAsync(request, TestContext.Current.CancellationToken);
    }

    /// <summary>A control-plane port with nothing listening on it yet.</summary>
    private static async Task<int> UnusedControlPlanePortAsync()
    {
        await using var cp = await TestControlPlane.StartAsync(grpcPort: 0);
        return cp.Host.GrpcEndPoint.Port;
    }

    private static Task<InProcessSidecar> StartSidecarAsync(int controlPlanePort, TimeSpan hold) =>
        InProcessSidecar.StartAsync(
            InProcessSidecar.WriteBootstrap(RepoPaths.NewTempDirectory(), "web", "test", $"http://127.0.0.1:{controlPlanePort}"),
            services => services.AddSingleton(new OutboundReadinessOptions { Hold = hold }));

    [Fact]
    public async Task A_request_before_the_first_snapshot_is_held_and_forwarded_once_it_arrives()
    {
        await using var backend = SampleApp.Build("backend-a", 0, null, quiet: true);
        await backend.StartAsync(TestContext.Current.CancellationToken);
        var port = await UnusedControlPlanePortAsync();
        await using var sidecar = await StartSidecarAsync(port, TimeSpan.FromSeconds(60));
        Assert.False(sidecar.Store.HasSnapshot);

        var pending = SendAsync(sidecar, "a");
        await Task.WhenAny(pending, Task.Delay(TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken));
        Assert.False(pending.IsCompleted, "answered before the first snapshot (before the fix: at once, by the empty provisional snapshot)");

        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "s.yaml", Yaml.Service("a", "test", 80, backend.BoundPort()));
        await using var cp = await TestControlPlane.StartAsync(dir, port);

        using var response = await pending.WaitAsync(TimeSpan.FromSeconds(50), TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("backend-a", (await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).Trim());
    }

    [Fact]
    public async Task Without_a_control_plane_the_request_gets_503_SNR_after_the_hold()
    {
        var port = await UnusedControlPlanePortAsync();
        await using var sidecar = await StartSidecarAsync(port, TimeSpan.FromMilliseconds(300));

        using var response = await SendAsync(sidecar, "a");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("SNR", Assert.Single(response.Headers.GetValues("x-meshproxy-response-flags")));
        Assert.Contains("no configuration from the control plane yet", await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);
    }
}
