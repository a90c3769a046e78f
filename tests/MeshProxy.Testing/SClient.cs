using System.Diagnostics;
using System.Text;

namespace MeshProxy.Testing;

/// <summary>
/// A running 'openssl s_client' with stdin open, so that one TLS connection can be held and used again later
/// (an echo line, HTTP/1.1 requests); each project's PKI has a Connect method that names its files.
/// </summary>
public sealed class SClient : IAsyncDisposable
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

    public string Output => Stdout + Stderr;

    /// <summary>
    /// s_client to 127.0.0.1:<paramref name="port"/>, verifying the server against <paramref name="caFile"/>
    /// (a failed verification ends the handshake), presenting <paramref name="certFile"/> and <paramref name="keyFile"/>
    /// unless null, with <paramref name="extra"/> options (-quiet, -ign_eof, versions, ciphers).
    /// </summary>
    public static SClient Start(int port, string caFile, string? certFile, string? keyFile, params string[] extra)
    {
        var info = new ProcessStartInfo("openssl") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        List<string> args = ["s_client", "-connect", $"127.0.0.1:{port}", "-CAfile", caFile, "-verify_return_error"];
        if (certFile is not null && keyFile is not null)
        {
            args.AddRange(["-cert", certFile, "-key", keyFile]);
        }

        args.AddRange(extra);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        return new SClient(Process.Start(info)!);
    }

    /// <summary>Sends a line and waits (bounded) for the server to echo it; false if it never came back.</summary>
    public Task<bool> EchoAsync(string line, int timeoutMs = 5_000) =>
        SendAsync(line + "\n", stdout => stdout.Contains(line, StringComparison.Ordinal), timeoutMs);

    /// <summary>Sends one HTTP/1.1 GET on the held connection and waits (bounded) for the n-th 200 response.</summary>
    public Task<bool> GetAsync(string path, int expectedResponses, string host = "billing", int timeoutMs = 5_000) =>
        SendAsync($"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n", stdout => Count(stdout, "HTTP/1.1 200") >= expectedResponses, timeoutMs);

    /// <summary>The exit code once stdin is closed and the process has ended, or null if it is still running after <paramref name="timeoutMs"/>.</summary>
    public async Task<int?> ExitCodeAsync(int timeoutMs = 10_000)
    {
        try
        {
            _process.StandardInput.Close();
        }
        catch (IOException)
        {
            // Already gone: its exit code is what is asked for.
        }

        using var cts = new CancellationTokenSource(timeoutMs);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            await Task.Delay(50, CancellationToken.None); // let the last output lines land
            return _process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            return null;
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

    private async Task<bool> SendAsync(string text, Func<string, bool> answered, int timeoutMs)
    {
        try
        {
            await _process.StandardInput.WriteAsync(text);
            await _process.StandardInput.FlushAsync();
        }
        catch (IOException)
        {
            return false;
        }

        var watch = Stopwatch.StartNew();
        while (watch.ElapsedMilliseconds < timeoutMs)
        {
            if (answered(Stdout))
            {
                return true;
            }

            if (_process.HasExited)
            {
                await Task.Delay(100); // the output of a process that just ended may still be in flight
                return answered(Stdout);
            }

            await Task.Delay(20);
        }

        return false;
    }

    private static int Count(string text, string what)
    {
        var count = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
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
}
