namespace MeshProxy.ControlPlane.Tests.Infrastructure;

/// <summary>
/// The four listener ports of one sidecar process, reserved for the whole test (see PortReservation), so that a
/// restarted sidecar takes the same ones back and a Service can name its inbound port before it starts.
/// </summary>
internal sealed class SidecarPorts(string workload) : IDisposable
{
    private readonly PortReservation _outbound = new(), _inbound = new(), _admin = new(), _stats = new();

    public string Workload => workload;

    public int Outbound => _outbound.Port;

    public int Inbound => _inbound.Port;

    public int Admin => _admin.Port;

    public int Stats => _stats.Port;

    public void Dispose()
    {
        _outbound.Dispose();
        _inbound.Dispose();
        _admin.Dispose();
        _stats.Dispose();
    }

    /// <summary>
    /// Writes <c>&lt;workload&gt;.yaml</c> in <paramref name="directory"/>: namespace shop, service account = workload, the
    /// token file <c>&lt;workload&gt;.token</c> beside it, and <paramref name="caFile"/> (relative to it) for an https:// control plane.
    /// </summary>
    public string WriteBootstrap(string directory, int appPort, string controlPlane, string? caFile = null)
    {
        var path = Path.Combine(directory, $"{workload}.yaml");
        File.WriteAllText(path, $$"""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: {{workload}}, namespace: shop }
            spec:
              workload: { serviceAccount: {{workload}} }
              app: { port: {{appPort}} }
              listeners: { outbound: {{Outbound}}, inbound: {{Inbound}}, admin: {{Admin}}, stats: {{Stats}}, inboundAddress: 127.0.0.1 }
              drainDuration: 0s
              controlPlane: { address: "{{controlPlane}}", tokenFile: {{workload}}.token{{(caFile is null ? string.Empty : $", caFile: {caFile}")}} }

            """);
        return path;
    }
}
