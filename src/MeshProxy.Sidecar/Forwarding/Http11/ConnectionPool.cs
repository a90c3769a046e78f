using System.Net;

namespace MeshProxy.Sidecar.Forwarding.Http11;

/// <summary>
/// The lean path's idle connections to the app, most recently used first (warm connections stay warm, the rest
/// age out). A connection idle longer than the pool's idle timeout is closed, at its next rent or by a sweep on
/// the injected clock; one the app closed meanwhile is found by a poll before reuse.
/// </summary>
internal sealed class ConnectionPool : IDisposable
{
    private readonly List<UpstreamConnection> _idle = []; // oldest first
    private readonly TimeProvider _time;
    private readonly TimeSpan _idleTimeout;
    private readonly ITimer _sweep;
    private bool _disposed;

    public ConnectionPool(TimeProvider time, TimeSpan idleTimeout)
    {
        _time = time;
        _idleTimeout = idleTimeout;
        _sweep = time.CreateTimer(static s => ((ConnectionPool)s!).Sweep(), this, idleTimeout, idleTimeout);
    }

    public int IdleCount
    {
        get
        {
            lock (_idle)
            {
                return _idle.Count;
            }
        }
    }

    /// <summary>An idle connection to <paramref name="endPoint"/> that is still open, or null.</summary>
    public UpstreamConnection? TryRent(IPEndPoint endPoint)
    {
        while (true)
        {
            UpstreamConnection connection;
            lock (_idle)
            {
                if (_idle.Count == 0)
                {
                    return null;
                }

                connection = _idle[^1];
                _idle.RemoveAt(_idle.Count - 1);
            }

            if (connection.EndPoint.Equals(endPoint) && _time.GetElapsedTime(connection.IdleSince) < _idleTimeout && connection.IsReusable())
            {
                return connection;
            }

            connection.Dispose();
        }
    }

    public void Return(UpstreamConnection connection)
    {
        connection.IdleSince = _time.GetTimestamp();
        lock (_idle)
        {
            if (!_disposed)
            {
                _idle.Add(connection);
                return;
            }
        }

        connection.Dispose();
    }

    public void Dispose()
    {
        _sweep.Dispose();
        UpstreamConnection[] all;
        lock (_idle)
        {
            _disposed = true;
            all = [.. _idle];
            _idle.Clear();
        }

        foreach (var connection in all)
        {
            connection.Dispose();
        }
    }

    private void Sweep()
    {
        List<UpstreamConnection>? expired = null;
        lock (_idle)
        {
            var n = 0;
            while (n < _idle.Count && _time.GetElapsedTime(_idle[n].IdleSince) >= _idleTimeout)
            {
                n++;
            }

            if (n > 0)
            {
                expired = _idle.GetRange(0, n);
                _idle.RemoveRange(0, n);
            }
        }

        expired?.ForEach(c => c.Dispose());
    }
}
