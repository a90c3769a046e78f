using System.Diagnostics;
using System.Net.Sockets;
using MeshProxy.Sidecar.Tests.Identity;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Tcp;

/// <summary>
/// SIGTERM to a real sidecar process with a TCP stream open through its inbound listener (over mTLS, as from another
/// sidecar): as for HTTP, new connections are refused at once, the open stream goes on moving bytes through the drain
/// period, and is closed at its end. The drain runs on the process's own clock, so the bounds here are generous.
/// </summary>
public sealed class TcpDrainTests
{
    private const int SigTerm = 15;
    private static readonly TimeSpan Drain = TimeSpan.FromSeconds(8);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Sigterm_lets_an_open_tcp_stream_go_on_through_the_drain_period_refuses_new_connections_and_closes_the_stream_at_its_end()
    {
        using var greeter = Greeter.Start();
        var files = MeshPki.Shared.WriteFiles(Path.Combine(RepoPaths.NewTempDirectory(), "billing"), "billing");
        await using var sidecar = await SidecarProcess.StartAsync(
            new MeshYaml("billing", greeter.Port, appProtocol: "TCP", drain: $"{Drain.TotalSeconds}s", tls: files).Mtls("STRICT"));

        var (stream, frame) = await CallingSidecar.OpenAsync(sidecar.Inbound, "store", Ct);
        await using var _ = stream;
        Assert.Equal("billing", frame.Metadata?.Workload);
        Assert.Equal("220 billing ready", await stream.ReadLineAsync(Ct));

        var clock = Stopwatch.StartNew();
        sidecar.Process.Signal(SigTerm);

        // New connections are refused once the listener has stopped accepting (readiness and unbinding come first thing
        // in the drain; the bound is only a smoke limit for a loaded machine). The open stream is used meanwhile.
        var exchanged = 0;
        async Task ExchangeAsync()
        {
            exchanged++;
            await stream.WriteLineAsync($"HELO {exchanged}", Ct);
            Assert.Equal($"250 ok HELO {exchanged}", await stream.ReadLineAsync(Ct));
        }

        while (true)
        {
            await ExchangeAsync();
            using var fresh = new TcpClient();
            try
            {
                await fresh.ConnectAsync(sidecar.Inbound, Ct);
            }
            catch (SocketException)
            {
                break;
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "the inbound listener still accepted new connections 5 s after SIGTERM");
            await Task.Delay(50, Ct);
        }

        // Bytes keep moving both ways well into the drain period.
        var refusedAt = clock.Elapsed;
        while (clock.Elapsed < refusedAt + TimeSpan.FromSeconds(1) || clock.Elapsed < Drain / 2)
        {
            await ExchangeAsync();
            await Task.Delay(100, Ct);
        }

        var lastExchange = clock.Elapsed;
        Assert.True(lastExchange < Drain, $"the exchanges ran past the drain period ({lastExchange}): the test cannot tell anything");
        Assert.Equal(1, greeter.Accepted);

        // At the end of the drain period the stream is closed, and the process exits cleanly.
        Assert.Null(await stream.ReadLineAsync(Ct));
        Assert.True(clock.Elapsed >= Drain - TimeSpan.FromMilliseconds(500), $"the stream was closed {clock.Elapsed} after SIGTERM, before the {Drain} drain period ended");
        Assert.Equal(0, await sidecar.Process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }
}
