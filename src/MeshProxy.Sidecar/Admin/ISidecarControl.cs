using System.Net;

namespace MeshProxy.Sidecar.Admin;

/// <summary>
/// What the admin and stats endpoints read and drive of the running sidecar: readiness, the bound listeners,
/// drain and quit. Declared here so that the endpoints need not know the host that wires them
/// (Hosting/SidecarLifecycle.cs implements it).
/// </summary>
internal interface ISidecarControl
{
    /// <summary>Why the sidecar is not ready (for /ready's body), or null when it is.</summary>
    string? NotReadyReason { get; }

    ListenerEndpoints Endpoints { get; }

    /// <summary>Readiness off and the inbound listener drained; idempotent (POST /drain and shutdown share one drain).</summary>
    Task DrainInboundAsync();

    /// <summary>/quitquitquit: stop now, skipping the drain period.</summary>
    void RequestQuit();
}

/// <summary>The addresses the listeners actually bound (port 0 in the configuration becomes a real port).</summary>
internal sealed record ListenerEndpoints(IPEndPoint? Outbound, IPEndPoint? Inbound, IPEndPoint? Admin, IPEndPoint? Stats);
