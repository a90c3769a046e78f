using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// Reads SO_ORIGINAL_DST once per connection, when it is accepted, and leaves it among the connection's
/// features for every request on that connection (Kestrel's request features fall back to the connection's).
/// A feature rather than an entry of connection.Items: the first read of Items creates a dictionary that the
/// connection then holds for its whole life, ~200 bytes per idle connection (benchmarks/RESULTS.md,
/// "Idle keep-alive connections: what holds the memory").
/// </summary>
internal static class OriginalDestinationMiddleware
{
    public static void Install(ListenOptions listen) => listen.Use(next => connection =>
    {
        if (connection.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket &&
            OriginalDestination.Read(socket) is { } original)
        {
            connection.Features.Put(new OriginalDestinationFeature(original));
        }

        return next(connection);
    });
}
