using System.Diagnostics;
using System.Text;

namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>A running 'openssl s_client' with stdin open, so that one TLS connection can be held and used repeatedly.</summary>
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

    public string Output => Stdout + Stderr;

    /// <summary>s_client to 127.0.0.1:<paramref name="port"/>, presenting <paramref name="clientCert"/> (a MeshPki name) unless null.</summary>
    public static SClient Start(int port, string? clientCert, params string[] extra)
    {
        var pki = MeshPki.Shared;
        var info = new ProcessStartInfo("openssl") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        List<string> args = ["s_client", "-connect", $"127.0.0.1:{port}", "-CAfile", pki.Cert("rootA"), "-verify_return_error", "-ign_eof"];
        if (clientCert is not null)
        {
            args.AddRange(["-cert", pki.Cert(clientCert), "-key", pki.Key(clientCert)]);
        }

        args.AddRange(extra);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        return new SClient(Process.Start(info)!);
    }

    /// <summary>Sends one HTTP/1.1 request on the held connection and waits (bounded) for the n-th 200 response.</summary>
    public async Task<bool> GetAsync(string path, int expectedResponses, int timeoutMs = 5_000)
    {
        try
        {
            await _process.StandardInput.WriteAsync($"GET {path} HTTP/1.1\r\nHost: billing\r\n\r\n");
            await _process.StandardInput.FlushAsync();
        }
        catch (IOException)
        {
            return false;
        }

        var watch = Stopwatch.StartNew();
        while (watch.ElapsedMilliseconds < timeoutMs)
        {
            if (Count(Stdout, "HTTP/1.1 200") >= expectedResponses)
            {
                return true;
            }

            if (_process.HasExited)
            {
                await Task.Delay(100);
                return Count(Stdout, "HTTP/1.1 200") >= expectedResponses;
            }

            await Task.Delay(20);
        }

        return false;
    }

    public async Task<int?> ExitCodeAsync(int timeoutMs = 10_000)
    {
        _process.StandardInput.Close();
        using var cts = new CancellationTokenSource(timeoutMs);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            await Task.Delay(50, CancellationToken.None);
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
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
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
