using MeshProxy.Sidecar.Listeners;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>The inbound listener's bound on TLS handshakes: a token bucket on injected time, then a real sidecar probed with openssl.</summary>
public sealed class HandshakeRateLimitTests
{
    private const int HandshakesShedEvent = 412;

    [Fact]
    public void The_burst_is_spent_then_tokens_return_at_the_rate()
    {
        var time = new FakeTimeProvider();
        var limit = new HandshakeRateLimit(perSecond: 10, burst: 3, time);

        Assert.True(limit.TryAcquire());
        Assert.True(limit.TryAcquire());
        Assert.True(limit.TryAcquire());
        Assert.False(limit.TryAcquire());

        time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.False(limit.TryAcquire()); // 0.99 of a token

        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(limit.TryAcquire());
        Assert.False(limit.TryAcquire());

        // An idle minute refills the burst, not more.
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(3, Enumerable.Range(0, 10).Count(_ => limit.TryAcquire()));
    }

    [Fact]
    public void The_default_follows_the_machine()
    {
        var limit = HandshakeRateLimit.ForThisMachine(new FakeTimeProvider());
        var burst = Enumerable.Range(0, 100_000).Count(_ => limit.TryAcquire());
        Assert.Equal(HandshakeRateLimit.PerSecondPerCore * Environment.ProcessorCount, burst);
    }

    [Fact]
    public async Task Handshakes_past_the_rate_are_closed_unanswered_while_established_connections_keep_working()
    {
        var time = new FakeTimeProvider();
        await using var mesh = await MtlsMesh.StartAsync(configureBilling: s => s.AddSingleton(new HandshakeRateLimit(perSecond: 1, burst: 2, time)));
        var port = mesh.Billing.Inbound.Port;
        var counters = mesh.Billing.Identity.Counters;

        await using var first = MeshPki.Connect(port, "store", "-brief");
        Assert.True(await first.GetAsync("/hello", 1), first.Output);
        await using var second = MeshPki.Connect(port, "store", "-brief");
        Assert.True(await second.GetAsync("/hello", 1), second.Output);

        await using (var third = MeshPki.Connect(port, "store", "-brief"))
        {
            Assert.NotEqual(0, await third.ExitCodeAsync());
            Assert.DoesNotContain("Protocol version", third.Output, StringComparison.Ordinal);
        }

        await using (var fourth = MeshPki.Connect(port, null))
        {
            Assert.NotEqual(0, await fourth.ExitCodeAsync());
        }

        Assert.Equal(2, counters.InboundHandshakesShed);
        Assert.Equal(2, counters.InboundHandshakes);
        Assert.Single(mesh.BillingLog.WithEvent(HandshakesShedEvent)); // a flood is one line per interval, not one per connection

        // Connections that finished their handshake are not affected.
        Assert.True(await first.GetAsync("/hello", 2), first.Output);

        // A second later there is a token again.
        time.Advance(TimeSpan.FromSeconds(1));
        await using var fifth = MeshPki.Connect(port, "store", "-brief");
        Assert.True(await fifth.GetAsync("/hello", 1), fifth.Output);
        Assert.Equal(2, counters.InboundHandshakesShed);
    }
}
