using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;

namespace MeshProxy.Identity.Tests;

/// <summary>A real TLS echo server on 127.0.0.1:0 (SslStream over a socket); records every handshake's outcome.</summary>
internal sealed class TlsEchoServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Func<SslServerAuthenticationOptions> _options;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly ConcurrentBag<Task> _connections = [];

    public TlsEchoServer(Func<SslServerAuthenticationOptions> options)
    {
        _options = options;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>One entry per connection: null when the handshake succeeded, else the exception.</summary>
    public BlockingCollection<Exception?> Handshakes { get; } = [];

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception)
            {
                return;
            }

            _connections.Add(ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using var _ = client;
        await using var ssl = new SslStream(client.GetStream());
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            await ssl.AuthenticateAsServerAsync(_options(), timeout.Token);
        }
        catch (Exception ex)
        {
            Handshakes.Add(ex);
            return;
        }

        Handshakes.Add(null);
        var buffer = new byte[4096];
        try
        {
            int read;
            while ((read = await ssl.ReadAsync(buffer, _stop.Token)) > 0)
            {
                await ssl.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
            }
        }
        catch (Exception)
        {
            // The peer went away or the server is stopping; either ends this connection only.
        }
    }

    public Exception? NextHandshake()
    {
        Assert.True(Handshakes.TryTake(out var outcome, TimeSpan.FromSeconds(15)), "the server saw no handshake");
        return outcome;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        await Task.WhenAll(_connections).WaitAsync(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }
}

/// <summary>A running 'openssl s_client' with stdin open, so a connection can be held and used later.</summary>
internal sealed class SClient : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    private SClient(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Append(_stdout, e.Data);
        process.ErrorDataReceived += (_, e) => Append(_stderr, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Stdout => Read(_stdout);

    public string Stderr => Read(_stderr);

    public static SClient Start(int port, OpenSslPki pki, string? clientCert, params string[] extra)
    {
        var info = new ProcessStartInfo("openssl") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in (string[])["s_client", "-connect", $"127.0.0.1:{port}", "-quiet", "-verify_return_error", "-CAfile", pki.CertPath("rootA")])
        {
            info.ArgumentList.Add(arg);
        }

        if (clientCert is not null)
        {
            foreach (var arg in (string[])["-cert", pki.CertPath(clientCert), "-key", pki.KeyPath(clientCert)])
            {
                info.ArgumentList.Add(arg);
            }
        }

        foreach (var arg in extra)
        {
            info.ArgumentList.Add(arg);
        }

        return new SClient(Process.Start(info)!);
    }

    /// <summary>Sends a line and waits (bounded) for the server to echo it; false if it never came back.</summary>
    public async Task<bool> EchoAsync(string line, int timeoutMs = 5_000)
    {
        try
        {
            await _process.StandardInput.WriteLineAsync(line);
            await _process.StandardInput.FlushAsync();
        }
        catch (IOException)
        {
            return false;
        }

        var watch = Stopwatch.StartNew();
        while (watch.ElapsedMilliseconds < timeoutMs)
        {
            if (Stdout.Contains(line, StringComparison.Ordinal))
            {
                return true;
            }

            if (_process.HasExited)
            {
                await Task.Delay(50);
                return Stdout.Contains(line, StringComparison.Ordinal);
            }

            await Task.Delay(20);
        }

        return false;
    }

    public async Task<int?> ExitCodeAsync(int timeoutMs = 10_000)
    {
        using var cts = new CancellationTokenSource(timeoutMs);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return _process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    private static void Append(StringBuilder builder, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (builder)
        {
            builder.AppendLine(line);
        }
    }

    private static string Read(StringBuilder builder)
    {
        lock (builder)
        {
            return builder.ToString();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        _process.Dispose();
    }
}
