using System.Text.Json.Nodes;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// TEST INFRASTRUCTURE: an informer that lags the API server. While <see cref="HoldWatchEvents"/> matches an object,
/// its ADDED/MODIFIED events are kept back from the open watches (the store, gets, lists and TokenReview see it at once,
/// as the API server's own do); <see cref="ReleaseWatchEvents"/> sends them, in order, and stops holding. Used for the
/// window between the kubelet starting a pod and the control plane's pod informer seeing it.
/// </summary>
internal sealed partial class FakeKubernetesApiServer
{
    private readonly List<(Watch Watch, string Line)> _held = [];

    /// <summary>Which objects' watch events to keep back (null: none).</summary>
    public Func<JsonObject, bool>? HoldWatchEvents { get; set; }

    /// <summary>Sends the events kept back and holds nothing more.</summary>
    public void ReleaseWatchEvents()
    {
        lock (_lock)
        {
            HoldWatchEvents = null;
            foreach (var (watch, line) in _held)
            {
                watch.Events.Writer.TryWrite(line);
            }

            _held.Clear();
        }
    }

    /// <summary>Sends <paramref name="line"/> (the event of <paramref name="obj"/>) on <paramref name="watch"/>, or keeps it back.</summary>
    private void SendLocked(Watch watch, JsonObject obj, string line)
    {
        if (HoldWatchEvents?.Invoke(obj) == true)
        {
            _held.Add((watch, line));
            return;
        }

        watch.Events.Writer.TryWrite(line);
    }
}
