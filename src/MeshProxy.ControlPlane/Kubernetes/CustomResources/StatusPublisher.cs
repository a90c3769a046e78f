using System.Threading.Channels;
using MeshProxy.ControlPlane.Resources;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes.CustomResources;

/// <summary>What a status write reads: the custom objects as last read, the state served with them, and the sidecars' answers to it.</summary>
internal sealed record StatusInputs(CustomResourceSnapshot Snapshot, ConfigState State, IReadOnlyDictionary<string, SidecarCounts> Counts);

/// <summary>
/// Runs the <see cref="StatusWriter"/> in the running control plane, apart from the pushes: a rebuild or a sidecar's
/// ACK/NACK only moves a timer (<see cref="Schedule"/>), and one loop of its own writes whatever is current once the
/// quiet time has passed, so a burst of ACKs after a push costs one pass, and a slow or absent API server never
/// holds up a push. A pass with failed writes is tried again with backoff (up to a minute) until one succeeds or
/// a newer change comes; nothing that goes wrong here stops the loop.
/// </summary>
internal sealed class StatusPublisher : IAsyncDisposable
{
    private static readonly TimeSpan MaxRetry = TimeSpan.FromMinutes(1);

    private readonly StatusWriter _writer;
    private readonly Func<StatusInputs?> _read;
    private readonly TimeSpan _debounce;
    private readonly ILogger _logger;
    // Capacity 1 and DropWrite: any number of requests while a pass runs coalesce into one more pass.
    private readonly Channel<byte> _due = Channel.CreateBounded<byte>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly ITimer _timer;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _failedPasses;

    public StatusPublisher(StatusWriter writer, Func<StatusInputs?> read, TimeSpan debounce, TimeProvider time, ILogger logger)
    {
        _writer = writer;
        _read = read;
        _debounce = debounce;
        _logger = logger;
        _timer = time.CreateTimer(_ => _due.Writer.TryWrite(0), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _loop = Task.Run(RunAsync, CancellationToken.None);
    }

    /// <summary>Something a status shows may have changed: write after the quiet time (a newer call moves it on).</summary>
    public void Schedule() => _timer.Change(_debounce, Timeout.InfiniteTimeSpan);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _timer.DisposeAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task RunAsync()
    {
        try
        {
            while (await _due.Reader.WaitToReadAsync(_stop.Token).ConfigureAwait(false))
            {
                _due.Reader.TryRead(out _);
                if (_read() is not { } inputs)
                {
                    continue;
                }

                int failed;
                try
                {
                    failed = await _writer.WriteAsync(inputs.Snapshot, inputs.State, inputs.Counts, _stop.Token).ConfigureAwait(false);
                }
#pragma warning disable CA1031 // Statuses are a report, never a reason to stop the control plane: whatever failed is logged and retried.
                catch (Exception ex) when (ex is not OperationCanceledException || !_stop.IsCancellationRequested)
#pragma warning restore CA1031
                {
                    _logger.StatusPassFailed(ex.Message);
                    failed = 1;
                }

                if (failed == 0)
                {
                    _failedPasses = 0;
                    continue;
                }

                _failedPasses++;
                var retry = TimeSpan.FromSeconds(Math.Min(MaxRetry.TotalSeconds, Math.Pow(2, Math.Min(_failedPasses - 1, 10))));
                _timer.Change(retry, Timeout.InfiniteTimeSpan);
                _logger.StatusWritesRetrying(failed, retry.TotalSeconds);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }
}
