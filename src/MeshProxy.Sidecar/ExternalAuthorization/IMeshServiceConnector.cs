namespace MeshProxy.Sidecar.ExternalAuthorization;

/// <summary>
/// How a Check reaches a provider that is a mesh service: over mutual TLS with this sidecar's SVID to one of the
/// service's sidecars, as Envoy's ext_authz cluster is the service's outbound cluster. Implemented by Forwarding
/// (Forwarding/MeshServiceConnector.cs), which owns mTLS origination, so that this folder does not depend on it.
/// </summary>
internal interface IMeshServiceConnector
{
    /// <summary>True when this sidecar has an identity and <paramref name="host"/>:<paramref name="port"/> is a mesh service of the current snapshot whose endpoints are sidecars.</summary>
    bool IsMeshService(string host, int port);

    /// <summary>An mTLS connection offering h2 to an endpoint of the service, picked by its load balancer and verified to be one of the identities it may have.</summary>
    ValueTask<Stream> ConnectAsync(string host, int port, CancellationToken cancellationToken);
}
