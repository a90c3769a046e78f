using MeshProxy.Sidecar.Tests.Identity;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.Sidecar.Tests.Tcp;

/// <summary>
/// The TCP idle timeout a real sidecar applies to a stream (Istio's connectionPool.tcp.idleTimeout, 1 h by default),
/// on the sidecar's injected clock: not the HTTP pool's idle timeout (90 s), which a quiet database connection would
/// otherwise meet.
/// </summary>
public sealed class TcpIdleTimeoutTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_quiet_stream_outlives_the_http_idle_timeout_and_is_closed_after_the_tcp_one()
    {
        using var greeter = Greeter.Start();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(5)); // certificates are checked against it: inside their validity
        var files = MeshPki.Shared.WriteFiles(Path.Combine(RepoPaths.NewTempDirectory(), "billing"), "billing");
        await using var billing = await TestSidecar.StartAsync(
            new MeshYaml("billing", greeter.Port, appProtocol: "TCP", tls: files).Mtls("STRICT"),
            services => services.AddSingleton<TimeProvider>(time));

        var (stream, _) = await CallingSidecar.OpenAsync(billing.Inbound, "store", Ct);
        await using (stream)
        {
            Assert.Equal("220 billing ready", await stream.ReadLineAsync(Ct));

            // Ten quiet minutes: far past the HTTP pool's 90 s, well inside the TCP default of an hour.
            time.Advance(TimeSpan.FromMinutes(10));
            await stream.WriteLineAsync("HELO later", Ct);
            Assert.Equal("250 ok HELO later", await stream.ReadLineAsync(Ct));

            // An hour without a byte after that: closed.
            time.Advance(TimeSpan.FromHours(1));
            Assert.Null(await stream.ReadLineAsync(Ct));
        }
    }
}
