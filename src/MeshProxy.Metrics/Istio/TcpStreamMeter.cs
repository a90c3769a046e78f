namespace MeshProxy.Metrics.Istio;

/// <summary>
/// The Istio TCP counters of one pass-through stream, bound to its series when the stream opened
/// (<see cref="IstioMetrics.OpenTcpStream"/>). Bytes are added as they are copied, straight into the
/// series' cached prometheus-net counters: no lookup, no allocation, and a scrape always sees the bytes moved so far.
/// A default value records nothing.
/// </summary>
public readonly struct TcpStreamMeter
{
    private readonly IstioMetrics.TcpSeries? _series;

    internal TcpStreamMeter(IstioMetrics.TcpSeries series) => _series = series;

    /// <summary>Bytes sent to the downstream (the side that opened the stream): istio_tcp_sent_bytes_total.</summary>
    public void AddSent(long bytes)
    {
        if (bytes > 0)
        {
            _series?.Sent.Inc(bytes);
        }
    }

    /// <summary>Bytes received from the downstream: istio_tcp_received_bytes_total.</summary>
    public void AddReceived(long bytes)
    {
        if (bytes > 0)
        {
            _series?.Received.Inc(bytes);
        }
    }

    /// <summary>Counts the stream closed. Call once, when both directions are done.</summary>
    public void Close() => _series?.Closed.Inc();
}
