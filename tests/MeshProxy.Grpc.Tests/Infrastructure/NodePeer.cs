using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace MeshProxy.Grpc.Tests.Infrastructure;

/// <summary>A node script from peers/, killed (with its children) on dispose.</summary>
internal sealed class NodePeer : IAsyncDisposable
{
    private readonly Process process;
    private readonly StringBuilder stderr = new();

    private NodePeer(Process process)
    {
        this.process = process;
    }

    public static NodePeer Start(string script, params string[] args)
    {
        if (!Directory.Exists(RepoPaths.NodeModules))
        {
            throw new InvalidOperationException($"{RepoPaths.NodeModules} is missing: run `npm install` in tests/peers.");
        }

        var info = new ProcessStartInfo("node")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Path.Combine(RepoPaths.TestProject, "peers", script));
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["NODE_PATH"] = RepoPaths.NodeModules;
        var process = Process.Start(info) ?? throw new InvalidOperationException("node did not start");
        var peer = new NodePeer(process);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (peer.stderr)
                {
                    peer.stderr.AppendLine(e.Data);
                }
            }
        };
        process.BeginErrorReadLine();
        return peer;
    }

    public string Stderr
    {
        get
        {
            lock (stderr)
            {
                return stderr.ToString();
            }
        }
    }

    /// <summary>The first JSON line the script prints.</summary>
    public async Task<JsonElement> ReadJsonAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var line = await process.StandardOutput.ReadLineAsync(cts.Token)
                    ?? throw new InvalidOperationException($"node exited without a result. stderr:\n{Stderr}");
                if (line.StartsWith('{'))
                {
                    return JsonDocument.Parse(line).RootElement.Clone();
                }
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"node printed no result within {timeout}. stderr:\n{Stderr}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }

            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await process.WaitForExitAsync(cts.Token);
        }
        finally
        {
            process.Dispose();
        }
    }
}
