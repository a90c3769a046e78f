using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>
/// The HTTP/2 read-side watcher that learns the server's SETTINGS_MAX_CONCURRENT_STREAMS, fed hand-built
/// frames split at every possible place, and the serving gate following the learned capacity.
/// </summary>
public sealed class ServerStreamLimitTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(9)]
    [InlineData(4096)]
    public async Task Settings_frames_are_followed_across_reads_of_any_size(int chunk)
    {
        var cluster = Http2Cluster(maxConnections: 3);
        var frames = new MemoryStream();
        // The server's preface: SETTINGS with HEADER_TABLE_SIZE 4096 and MAX_CONCURRENT_STREAMS 7.
        Frame(frames, 0x4, 0, 0, Parameter(0x1, 4096), Parameter(0x3, 7));
        // A DATA frame whose payload looks like a SETTINGS frame: skipped whole.
        Frame(frames, 0x0, 0, 1, [0, 0, 6, 0x4, 0, 0, 0, 0, 0, .. Parameter(0x3, 99)]);
        // The ACK of our SETTINGS (no payload), a SETTINGS on a stream (invalid; ignored), a PING.
        Frame(frames, 0x4, 0x1, 0);
        Frame(frames, 0x4, 0, 5, Parameter(0x3, 98));
        Frame(frames, 0x6, 0, 0, new byte[8]);
        // A later SETTINGS lowering the limit.
        Frame(frames, 0x4, 0, 0, Parameter(0x4, 65535), Parameter(0x3, 5));

        var bytes = frames.ToArray();
        var seen = new List<int>();
        using var stream = new ServerStreamLimit.WatchingStream(new MemoryStream(bytes), cluster);
        var buffer = new byte[chunk];
        int read;
        while ((read = await stream.ReadAsync(buffer.AsMemory(), TestContext.Current.CancellationToken)) > 0)
        {
            if (seen.Count == 0 || seen[^1] != cluster.State.ServerStreams)
            {
                seen.Add(cluster.State.ServerStreams);
            }
        }

        Assert.Equal(5, cluster.State.ServerStreams);
        Assert.DoesNotContain(99, seen);
        Assert.DoesNotContain(98, seen);
        if (chunk <= 9)
        {
            // Small reads see the first value before the later SETTINGS replaces it.
            Assert.Contains(7, seen);
        }
    }

    [Fact]
    public void The_http2_serving_capacity_is_max_connections_times_the_servers_limit_within_http2_max_requests()
    {
        var limits = new CircuitLimits(3, int.MaxValue, 10, int.MaxValue);
        Assert.Equal(10, limits.Serving(http2: true, int.MaxValue)); // unknown yet: the configured capacity
        Assert.Equal(6, limits.Serving(http2: true, 2));
        Assert.Equal(10, limits.Serving(http2: true, 100));
        Assert.Equal(3, limits.Serving(http2: false, 2)); // HTTP/1.1: one request per connection
        Assert.Equal(int.MaxValue, CircuitLimits.Unlimited.Serving(http2: true, 2)); // no maxConnections: the server's limit makes no one wait
        Assert.False(CircuitLimits.Unlimited.Gated(http2: true));
        Assert.True(new CircuitLimits(1, int.MaxValue, int.MaxValue, int.MaxValue).Gated(http2: true));
    }

    [Fact]
    public async Task A_larger_advertised_limit_lets_pending_requests_in_at_once()
    {
        var cluster = Http2Cluster(maxConnections: 1);
        var state = cluster.State;
        state.ObserveServerStreams(1, cluster.Policy.Limits);
        Assert.True(state.Serving.TryEnter(cluster.Policy.Limits.Serving(http2: true, state.ServerStreams)));
        var waiting = state.Serving.EnterAsync(1, int.MaxValue, TimeSpan.FromSeconds(10), new FakeTimeProvider(), TestContext.Current.CancellationToken).AsTask();
        Assert.False(waiting.IsCompleted);

        state.ObserveServerStreams(2, cluster.Policy.Limits);
        Assert.Equal(GateResult.Entered, await waiting.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        Assert.Equal(2, state.Serving.Count);
    }

    private static Cluster Http2Cluster(int maxConnections) => new(
        "outbound|80||svc", "svc", "test", AppProtocol.Http2, [], new ClusterState(),
        new ClusterPolicy(LoadBalancerKind.LeastRequest, new CircuitLimits(maxConnections, int.MaxValue, int.MaxValue, int.MaxValue), null,
            RetryBudgetPolicy.Default, ClusterPolicy.DefaultConnectTimeout, ClusterPolicy.DefaultIdleTimeout));

    private static byte[] Parameter(ushort id, uint value) =>
        [(byte)(id >> 8), (byte)id, (byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value];

    private static void Frame(Stream to, byte type, byte flags, int streamId, params byte[][] payloads)
    {
        var length = payloads.Sum(p => p.Length);
        to.Write([(byte)(length >> 16), (byte)(length >> 8), (byte)length, type, flags,
            (byte)(streamId >> 24), (byte)(streamId >> 16), (byte)(streamId >> 8), (byte)streamId]);
        foreach (var p in payloads)
        {
            to.Write(p);
        }
    }
}
