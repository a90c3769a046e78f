using System.Net;
using System.Net.Sockets;
using System.Text;
using MeshProxy.Sidecar.Tests.Identity;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Tcp;

/// <summary>
/// PeerAuthentication on an app port declared TCP, whose server speaks first: a plaintext client from outside the mesh
/// (which sends nothing until it has the banner) against STRICT, PERMISSIVE and DISABLE, and a principal-based policy
/// that plaintext cannot satisfy.
/// </summary>
public sealed class TcpPeerAuthenticationTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(20);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_plaintext_client_of_a_server_that_speaks_first_gets_its_banner_where_the_mode_allows_plaintext_and_nothing_where_it_does_not()
    {
        using var greeter = Greeter.Start();
        var files = MeshPki.Shared.WriteFiles(Path.Combine(RepoPaths.NewTempDirectory(), "billing"), "billing");
        MeshYaml Billing(string mode, string? policy = null)
        {
            var yaml = new MeshYaml("billing", greeter.Port, appProtocol: "TCP", tls: files).Raw(PeerAuthenticationTests.Namespace(mode));
            return policy is null ? yaml : yaml.Raw(policy);
        }

        // PERMISSIVE: no ClientHello within the detection window, so plaintext; the banner then comes from the app.
        await using (var permissive = await TestSidecar.StartAsync(Billing("PERMISSIVE")))
        {
            Assert.Equal(["220 billing ready", "250 ok HELO outsider"], await ConverseAsync(permissive.Inbound));
            Assert.Equal(1, permissive.Identity.Counters.PlaintextAccepted);
        }

        // DISABLE: plaintext at once, nothing waited for.
        await using (var disabled = await TestSidecar.StartAsync(Billing("DISABLE")))
        {
            Assert.Equal(["220 billing ready", "250 ok HELO outsider"], await ConverseAsync(disabled.Inbound));
        }

        // STRICT: a plaintext client is refused once it speaks; the app never sees it.
        await using (var strict = await TestSidecar.StartAsync(Billing("STRICT")))
        {
            Assert.Empty(await ConverseAsync(strict.Inbound, speakFirst: true));
            Assert.Equal(1, strict.Identity.Counters.PlaintextRefused);
        }

        // PERMISSIVE, but only the store's principal is allowed: plaintext has none, so the stream is denied.
        await using (var permissiveOnlyStore = await TestSidecar.StartAsync(Billing("PERMISSIVE", PeerAuthenticationTests.OnlyStore)))
        {
            Assert.Empty(await ConverseAsync(permissiveOnlyStore.Inbound));
        }

        Assert.Equal(2, greeter.Accepted); // PERMISSIVE and DISABLE: the refused and the denied connections never reached it
    }

    /// <summary>Reads the banner (or, <paramref name="speakFirst"/>, sends first), answers HELO once; the lines received before the close.</summary>
    private static async Task<List<string>> ConverseAsync(IPEndPoint inbound, bool speakFirst = false)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(inbound, Ct);
        var stream = client.GetStream();
        var reader = new StreamReader(stream, Encoding.ASCII);
        var lines = new List<string>();
        try
        {
            if (speakFirst)
            {
                await stream.WriteAsync("HELO outsider\r\n"u8.ToArray(), Ct);
            }

            while (await reader.ReadLineAsync(Ct).AsTask().WaitAsync(Generous, Ct) is { } line)
            {
                lines.Add(line);
                if (lines.Count == 1 && !speakFirst)
                {
                    await stream.WriteAsync("HELO outsider\r\n"u8.ToArray(), Ct);
                }
                else
                {
                    break;
                }
            }
        }
        catch (IOException)
        {
            // Reset: refused.
        }

        return lines;
    }
}
