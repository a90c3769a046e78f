using MeshProxy.Metrics.Istio;
using Microsoft.AspNetCore.Http.Features;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Stands in for Kestrel's upgrade features on a request that may switch protocols (an HTTP/1.1
/// Upgrade, an HTTP/2 extended CONNECT), so that the stream the forwarder copies after the switch is a
/// <see cref="MeteredStream"/>: the stream is counted opened when the upgrade is accepted, its bytes as
/// they pass, and closed by <see cref="Close"/> when the request finishes. A request that never switches
/// records nothing. Installed only on such requests: one small object each.
/// Outbound, the labels are those known before forwarding plus, once the destination sidecar answers
/// over mTLS, its peer metadata (<see cref="DestinationAnswered"/>): the series is looked up only when
/// the switch is accepted, which the forwarder does after it has handed the response to the transformer.
/// </summary>
/// <param name="outbound">Outbound only: the snapshot's labels and the cluster, to name the destination workload once it answers.</param>
internal sealed class MeteredUpgrade(IstioMetrics istio, TcpLabels labels, IHttpUpgradeFeature? upgrade, IHttpExtendedConnectFeature? connect,
    (SnapshotLabels Labels, Routing.Cluster Cluster)? outbound = null)
    : IHttpUpgradeFeature, IHttpExtendedConnectFeature
{
    private readonly TcpLabels _known = labels; // before the destination answered
    private TcpLabels _labels = labels;
    private TcpStreamMeter _meter;
    private int _opened;

    public bool IsUpgradableRequest => upgrade?.IsUpgradableRequest ?? false;

    public bool IsExtendedConnect => connect?.IsExtendedConnect ?? false;

    public string? Protocol => connect?.Protocol;

    public async Task<Stream> UpgradeAsync() => Meter(await upgrade!.UpgradeAsync());

    public async ValueTask<Stream> AcceptAsync() => Meter(await connect!.AcceptAsync());

    /// <summary>
    /// Outbound: the response of the attempt that is about to switch, with the destination sidecar's
    /// metadata (null when it sent none or the attempt was not over mTLS), as the request's metric gets it.
    /// </summary>
    public void DestinationAnswered(PeerMetadata? peer, string? principal)
    {
        if (outbound is { } o)
        {
            _labels = _known with { Workload = o.Labels.Outbound(o.Cluster, peer, principal) };
        }
    }

    /// <summary>Counts the stream closed, if it was ever opened. The forwarder has finished copying by now.</summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref _opened, 0) == 1)
        {
            _meter.Close();
        }
    }

    private MeteredStream Meter(Stream stream)
    {
        _meter = istio.OpenTcpStream(_labels);
        Volatile.Write(ref _opened, 1);
        return new MeteredStream(stream, _meter, downstream: true);
    }
}
