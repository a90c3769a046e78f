using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;

namespace MeshProxy.Testing;

/// <summary>A grpc-js peer script: JSON lines out, commands in; killed on dispose.</summary>
public sealed class NodePeer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Channel<JsonElement> _events = Channel.CreateUnbounded<JsonElement>();
    private readonly List<string> _stderr = [];

    private NodePeer(Process process)
    {
        _process = process;
    }

    public static NodePeer Start(string script, params string[] args) => StartIn(null, script, args);

    /// <summary>The script run inside <paramref name="ns"/> (the host's namespace when null); `ip netns exec` execs node, so killing the process ends the peer.</summary>
    public static NodePeer StartIn(NetworkNamespace? ns, string script, params string[] args)
    {
        var info = new ProcessStartInfo(ns is null ? "node" : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (ns is not null)
        {
            foreach (var a in (string[])["netns", "exec", ns.Name, "node"])
            {
                info.ArgumentList.Add(a);
            }
        }

        info.ArgumentList.Add(RepoPaths.Peer(script));
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        info.Environment["NODE_PATH"] = RepoPaths.NodeModules;
        info.Environment["MESHPROXY_PROTO_ROOT"] = RepoPaths.ProtoRoot;
        var process = new Process { StartInfo = info };
        var peer = new NodePeer(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { Length: > 0 } line)
            {
                try
                {
                    peer._events.Writer.TryWrite(JsonDocument.Parse(line).RootElement.Clone());
                }
                catch (JsonException)
                {
                    lock (peer._stderr)
                    {
                        peer._stderr.Add(line);
                    }
                }
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (peer._stderr)
                {
                    peer._stderr.Add(e.Data);
                }
            }
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return peer;
    }

    /// <summary>
    /// The next event that satisfies <paramref name="match"/> (earlier ones are skipped), or a failure naming what was
    /// seen. The default wait is a smoke limit sized for a 2-core CI machine at load 50-80, where a peer's first call
    /// took over 10 s; only a failing test waits it out.
    /// </summary>
    public async Task<JsonElement> NextAsync(Func<JsonElement, bool> match, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        var seen = new List<string>();
        try
        {
            while (true)
            {
                var e = await _events.Reader.ReadAsync(cts.Token);
                if (match(e))
                {
                    return e;
                }

                seen.Add(e.GetRawText());
            }
        }
        catch (OperationCanceledException)
        {
            string errors;
            lock (_stderr)
            {
                errors = string.Join("\n", _stderr);
            }

            throw new TimeoutException($"no matching event; seen: {string.Join("\n", seen)}\nstderr: {errors}");
        }
    }

    /// <summary>True if an event matching arrives within <paramref name="wait"/>.</summary>
    public async Task<bool> ReceivesWithinAsync(Func<JsonElement, bool> match, TimeSpan wait)
    {
        try
        {
            await NextAsync(match, wait);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    public Task<JsonElement> NextSnapshotAsync(TimeSpan? timeout = null) => NextAsync(e => e.GetProperty("type").GetString() == "snapshot", timeout);

    public async Task SendAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync();
    }

    public ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
