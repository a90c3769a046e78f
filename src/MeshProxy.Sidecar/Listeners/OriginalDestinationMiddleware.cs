using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace MeshProxy.Sidecar.Listeners;

/// <summary>
/// Reads SO_ORIGINAL_DST once per connection, when it is accepted, and leaves it in the connection's
/// items for every request on that connection.
/// </summary>
internal static class OriginalDestinationMiddleware
{
    public static void Install(ListenOptions listen) => listen.Use(next => connection =>
    {
        if (connection.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket &&
            OriginalDestination.Read(socket) is { } original)
        {
            connection.Items[typeof(OriginalDestinationFeature)] = new OriginalDestinationFeature(original);
        }

        return next(connection);
    });
}
