using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace MeshProxy.Identity.Tests;

public sealed class SvidRotatorTests : IAsyncDisposable
{
    private static readonly SpiffeId Web = SpiffeId.Parse(OpenSslPki.Web);
    private readonly TempDirectory _dir = new();
    private readonly ManualTimeProvider _clock = new(DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()));
    private readonly CertificateAuthority _ca;
    private readonly List<DateTimeOffset> _calls = [];
    private readonly CancellationTokenSource _stop = new();
    private Task? _running;
    private SvidRotator? _rotator;

    public SvidRotatorTests()
    {
        _ca = CertificateAuthority.LoadOrCreate(_dir.Path, new CertificateAuthorityOptions { TrustDomain = OpenSslPki.TrustDomain }, _clock);
    }

    private int Calls
    {
        get
        {
            lock (_calls)
            {
                return _calls.Count;
            }
        }
    }

    private SvidStore Start(int failures = 0, SvidRotatorOptions? options = null, SvidStore? store = null)
    {
        store ??= new SvidStore();
        var rotator = _rotator = new SvidRotator(store, Web, (csr, _) =>
        {
            lock (_calls)
            {
                _calls.Add(_clock.GetUtcNow());
                if (_calls.Count <= failures)
                {
                    throw new IOException($"control plane unreachable (call {_calls.Count})");
                }
            }

            return Task.FromResult(_ca.Sign(csr, Web));
        }, options, _clock);
        _running = rotator.RunAsync(_stop.Token);
        return store;
    }

    /// <summary>Waits until the rotator sleeps on the clock (after <paramref name="calls"/> CA calls), then returns when it wants to wake.</summary>
    private async Task<DateTimeOffset> SleepingAfter(int calls)
    {
        try
        {
            await Eventually.TrueAsync(() => Calls == calls && _clock.PendingTimers == 1, $"{calls} calls and the rotator asleep");
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"{ex.Message} (now {Calls} calls, {_clock.PendingTimers} timers, running: {_running?.Status})", ex);
        }

        return _clock.NextDue!.Value;
    }

    [Fact]
    public async Task Renews_at_half_life_with_jitter_and_a_fresh_key()
    {
        var store = Start();
        var t0 = _clock.GetUtcNow();
        var wake = await SleepingAfter(1);
        var first = store.Current!;
        Assert.Equal(Web, store.SpiffeId);

        var halfLife = (first.NotAfter - first.NotBefore) / 2;
        Assert.InRange(wake, first.NotBefore + (halfLife * 0.9), first.NotBefore + (halfLife * 1.1));
        Assert.InRange(wake - t0, TimeSpan.FromHours(10.7), TimeSpan.FromHours(13.3));

        var changed = 0;
        store.Changed += (_, _) => Interlocked.Increment(ref changed);
        _clock.AdvanceTo(wake - TimeSpan.FromSeconds(1));
        await Task.Delay(100, TestContext.Current.CancellationToken);
        Assert.Equal(1, Calls);

        _clock.AdvanceTo(wake);
        var wake2 = await SleepingAfter(2);
        var second = store.Current!;
        Assert.NotEqual(first.Certificate.SerialNumber, second.Certificate.SerialNumber);
        Assert.NotEqual(first.Certificate.GetPublicKeyString(), second.Certificate.GetPublicKeyString());
        Assert.Equal(1, changed);
        Assert.Equal(wake, _calls[1]);
        Assert.InRange(wake2, second.NotBefore + (halfLife * 0.9), second.NotBefore + (halfLife * 1.1));
    }

    [Fact]
    public async Task Backs_off_exponentially_with_bounded_jitter_then_recovers()
    {
        var options = new SvidRotatorOptions { InitialBackoff = TimeSpan.FromSeconds(1), MaxBackoff = TimeSpan.FromSeconds(8), BackoffJitter = 0.2 };
        var store = Start(failures: 6, options);

        var delays = new List<TimeSpan>();
        for (var attempt = 1; attempt <= 6; attempt++)
        {
            var wake = await SleepingAfter(attempt);
            Assert.Null(store.Current);
            delays.Add(wake - _clock.GetUtcNow());
            _clock.AdvanceTo(wake);
        }

        await SleepingAfter(7);
        Assert.NotNull(store.Current);

        double[] expected = [1, 2, 4, 8, 8, 8];
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.InRange(delays[i].TotalSeconds, Math.Min(expected[i] * 0.8, 8), Math.Min(expected[i] * 1.2, 8));
        }
    }

    [Fact]
    public async Task A_reconnect_sends_the_next_request_at_once_instead_of_at_the_end_of_the_backoff()
    {
        var store = Start(failures: 2, new SvidRotatorOptions { InitialBackoff = TimeSpan.FromSeconds(20), MaxBackoff = TimeSpan.FromSeconds(30) });
        var t0 = _clock.GetUtcNow();
        await SleepingAfter(1);
        Assert.Null(store.Current);

        _rotator!.RenewNowIfDue();
        await SleepingAfter(2); // failed again: back to waiting, and the next wake-up cuts that short too
        _rotator.RenewNowIfDue();
        var renewal = await SleepingAfter(3);

        Assert.NotNull(store.Current);
        Assert.All(_calls, at => Assert.Equal(t0, at)); // the clock never moved: no backoff was waited out
        Assert.True(renewal - t0 > TimeSpan.FromHours(10), "then it sleeps until the renewal point");
    }

    [Fact]
    public async Task A_saved_svid_is_renewed_on_its_own_schedule_and_a_reconnect_before_that_asks_nothing()
    {
        var store = new SvidStore();
        using (var key = WorkloadKey.Create())
        {
            var issued = _ca.Sign(key.CreateSigningRequestPem(Web), Web);
            store.Update(X509Svid.Create(key, issued.CertificateChainPem, Web), TrustBundle.FromPem(issued.TrustBundlePem));
        }

        var saved = store.Current!;
        Start(failures: 1, store: store);
        var wake = await SleepingAfter(0);
        var halfLife = (saved.NotAfter - saved.NotBefore) / 2;
        Assert.InRange(wake, saved.NotBefore + (halfLife * 0.9), saved.NotBefore + (halfLife * 1.1));

        _rotator!.RenewNowIfDue(); // the control plane came back, but nothing is due
        await Task.Delay(200, TestContext.Current.CancellationToken);
        Assert.Equal(0, Calls);
        Assert.Equal(wake, _clock.NextDue);

        _clock.AdvanceTo(wake);
        await SleepingAfter(1); // due, and the CA is away: backing off with the saved SVID still in use
        Assert.Same(saved, store.Current);
        _rotator.RenewNowIfDue();
        await SleepingAfter(2);
        Assert.NotSame(saved, store.Current);
        Assert.Equal(wake, _calls[1]);
    }

    [Theory]
    [InlineData(0.0, 0.9)]
    [InlineData(0.5, 1.0)]
    [InlineData(1.0, 1.1)]
    public void Renewal_point_is_half_life_spread_by_ten_percent(double random, double fractionOfHalfLife)
    {
        var notBefore = DateTimeOffset.UnixEpoch;
        var delay = SvidRotator.RenewalDelay(notBefore, notBefore + TimeSpan.FromHours(24), notBefore, 0.1, random);
        Assert.Equal(TimeSpan.FromHours(12) * fractionOfHalfLife, delay);
        Assert.Equal(TimeSpan.Zero, SvidRotator.RenewalDelay(notBefore, notBefore + TimeSpan.FromHours(24), notBefore + TimeSpan.FromHours(20), 0.1, random));
    }

    [Fact]
    public async Task New_handshakes_see_the_new_certificate_while_an_established_stream_keeps_working()
    {
        var store = Start();
        var wake = await SleepingAfter(1);
        var verifier = new PeerCertificateVerifier(_clock);

        await using var server = new TlsEchoServer(() => new SslServerAuthenticationOptions
        {
            ServerCertificateContext = store.CertificateContext,
            ClientCertificateRequired = true,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            RemoteCertificateValidationCallback = verifier.CreateCallback(() => store.TrustBundle!, OpenSslPki.TrustDomain, PeerRole.Client),
        });

        var (firstConnection, firstSerial) = await ConnectAsync(server.Port, store, verifier);
        await using var _ = firstConnection;
        Assert.Equal(store.Current!.Certificate.SerialNumber, firstSerial);
        await AssertEchoAsync(firstConnection, "before");

        _clock.AdvanceTo(wake);
        await SleepingAfter(2);
        Assert.NotEqual(firstSerial, store.Current!.Certificate.SerialNumber);

        var (secondConnection, secondSerial) = await ConnectAsync(server.Port, store, verifier);
        await using var __ = secondConnection;
        Assert.Equal(store.Current.Certificate.SerialNumber, secondSerial);
        await AssertEchoAsync(secondConnection, "new");
        await AssertEchoAsync(firstConnection, "after");
    }

    private static async Task<(SslStream Stream, string ServerSerial)> ConnectAsync(int port, SvidStore store, PeerCertificateVerifier verifier)
    {
        var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        var ssl = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "server",
            ClientCertificateContext = store.CertificateContext,
            EnabledSslProtocols = SslProtocols.Tls13,
            RemoteCertificateValidationCallback = verifier.CreateCallback(() => store.TrustBundle!, OpenSslPki.TrustDomain, PeerRole.Server, new HashSet<SpiffeId> { Web }),
        }, cts.Token);
        var serial = ((X509Certificate2)ssl.RemoteCertificate!).SerialNumber;
        return (ssl, serial);
    }

    private static async Task AssertEchoAsync(SslStream stream, string text)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var bytes = System.Text.Encoding.ASCII.GetBytes(text);
        await stream.WriteAsync(bytes, cts.Token);
        var buffer = new byte[bytes.Length];
        await stream.ReadExactlyAsync(buffer, cts.Token);
        Assert.Equal(text, System.Text.Encoding.ASCII.GetString(buffer));
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_running is not null)
        {
            await _running.WaitAsync(TimeSpan.FromSeconds(10));
        }

        _ca.Dispose();
        _stop.Dispose();
        _dir.Dispose();
    }
}
