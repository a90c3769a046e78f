using System.Diagnostics;
using System.Text;

namespace MeshProxy.Testing;

/// <summary>A child process whose output is captured line by line, killed (with its children) on dispose.</summary>
public sealed class ExternalProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private int _disposed;

    private ExternalProcess(Process process)
    {
        _process = process;
    }

    public int Id => _process.Id;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public static ExternalProcess Start(string fileName, IEnumerable<string> args, IDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[k] = v;
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var result = new ExternalProcess(process);
        process.OutputDataReceived += (_, e) => result.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => result.OnLine(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return result;
    }

    /// <summary>A Node peer script (see <see cref="RepoPaths.Peer"/>) with the repository's node_modules and protos.</summary>
    public static ExternalProcess Node(string script, params string[] args) =>
        Start("node", [RepoPaths.Peer(script), .. args], new Dictionary<string, string> { ["NODE_PATH"] = RepoPaths.NodeModules, ["MESHPROXY_PROTO_ROOT"] = RepoPaths.ProtoRoot });

    /// <summary>
    /// The least a wait for a line lasts before it fails. A wait is a smoke limit, never the assertion:
    /// on a 2-core CI machine at load 80 a control plane took over 60 s to print that it listens, so a
    /// caller's quiet-machine figure below this is raised to it. Only a failing test waits this long.
    /// </summary>
    public static readonly TimeSpan MinimumLineWait = TimeSpan.FromMinutes(3);

    /// <summary>Waits for a line containing <paramref name="marker"/> and returns it; fails early if the process exits.</summary>
    public async Task<string> WaitForLineAsync(string marker, TimeSpan timeout)
    {
        timeout = timeout < MinimumLineWait ? MinimumLineWait : timeout;
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var line = Output.Split('\n').FirstOrDefault(l => l.Contains(marker, StringComparison.Ordinal));
            if (line is not null)
            {
                return line.TrimEnd('\r');
            }

            if (_process.HasExited)
            {
                break;
            }

            await Task.Delay(50);
        }

        throw new TimeoutException($"'{marker}' not seen within {timeout}. Output so far:\n{Output}");
    }

    /// <summary>The exit code; throws if the process has not exited within <paramref name="timeout"/>.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    /// <summary>True if the process exited within <paramref name="timeout"/>; it is left running otherwise.</summary>
    public async Task<bool> ExitsWithinAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Signal(int signal) => _ = Kill(_process.Id, signal);

    /// <summary>Kills the process; safe to call again, so that a test may stop a peer early under its <c>await using</c>.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int sig);
}
