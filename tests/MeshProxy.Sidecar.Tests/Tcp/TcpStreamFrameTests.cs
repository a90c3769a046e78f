using MeshProxy.Sidecar.Tcp;
using MeshProxy.Sidecar.Tests.Identity;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Tcp;

/// <summary>
/// The metadata frame at the start of a TCP stream between sidecars (Tcp/PeerPreamble.cs), against a real inbound
/// sidecar over mTLS: a malformed frame ends its own stream and nothing else; a stream the policy denies is told so
/// in the frame exchange, so that the caller can record a denial rather than a connect failure.
/// </summary>
public sealed class TcpStreamFrameTests
{
    private const int UpstreamConnectFailedEvent = 7003;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_malformed_frame_closes_its_own_stream_only_and_a_denied_caller_gets_the_denial_in_place_of_metadata()
    {
        using var greeter = Greeter.Start();
        var files = MeshPki.Shared.WriteFiles(Path.Combine(RepoPaths.NewTempDirectory(), "billing"), "billing");
        var log = new LogCapture();
        await using var billing = await TestSidecar.StartAsync(
            new MeshYaml("billing", greeter.Port, appProtocol: "TCP", tls: files).Mtls("STRICT").Raw(PeerAuthenticationTests.OnlyStore),
            log.Register);

        // A well-formed stream: the inbound sidecar's metadata, then the app's banner and answers.
        var (good, frame) = await CallingSidecar.OpenAsync(billing.Inbound, "store", Ct);
        await using (good)
        {
            Assert.False(frame.IsDenied);
            Assert.Equal("billing", frame.Metadata?.Workload);
            Assert.Equal("220 billing ready", await good.ReadLineAsync(Ct));
            await good.WriteLineAsync("HELO one", Ct);
            Assert.Equal("250 ok HELO one", await good.ReadLineAsync(Ct));

            // Frames that are not well-formed: over the length limit, and cut short. Each ends its own stream before
            // a byte reaches the app.
            foreach (var bad in new[] { new byte[] { 0x20, 0x00, (byte)'v', (byte)'1' }, [0x00] })
            {
                await using var malformed = await CallingSidecar.HandshakeAsync(billing.Inbound, "store", Ct);
                // The inbound side's own frame comes first, unasked. Read before the bad frame is sent: the inbound
                // side aborts on it with the caller's bytes unread, and the reset that makes can discard its frame
                // from this side's receive queue before it is read (fresh-clone CI, 2026-12-07).
                Assert.False((await PeerPreamble.ReadAsync(malformed.Tls, Ct)).IsDenied);
                await malformed.Tls.WriteAsync(bad, Ct);
                await malformed.Tls.FlushAsync(Ct);
                if (bad.Length == 1)
                {
                    await malformed.Tls.ShutdownAsync(); // the frame's second byte never comes
                }

                Assert.Null(await malformed.ReadLineAsync(Ct)); // closed or reset, never the app's banner
            }

            Assert.Equal(2, log.WithEvent(UpstreamConnectFailedEvent).Count);

            // The stream opened before goes on.
            await good.WriteLineAsync("HELO two", Ct);
            Assert.Equal("250 ok HELO two", await good.ReadLineAsync(Ct));
        }

        // A caller the policy denies: the denial in place of the metadata, then the end of the stream, no banner.
        var (denied, reply) = await CallingSidecar.OpenAsync(billing.Inbound, "impostor", Ct);
        await using (denied)
        {
            Assert.True(reply.IsDenied);
            Assert.Null(reply.Metadata);
            Assert.Null(await denied.ReadLineAsync(Ct));
        }

        Assert.Equal(1, greeter.Accepted); // only the well-formed, allowed stream reached the app
    }
}
