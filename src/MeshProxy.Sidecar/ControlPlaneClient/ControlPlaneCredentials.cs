using Grpc.Core;
using MeshProxy.Config.Resources;
using MeshProxy.Identity;

namespace MeshProxy.Sidecar.ControlPlaneClient;

/// <summary>
/// What the sidecar proves itself with on the config stream, chosen afresh for every attempt (each has its own
/// channel): over <c>https://</c>, once the control plane's CA has issued it an SVID that is valid now, that SVID as
/// the TLS client certificate; otherwise the bootstrap token of <c>controlPlane.tokenFile</c> (on Kubernetes the
/// pod's projected service-account token), read at every attempt so that a token the kubelet rotated is picked up,
/// as <c>authorization: Bearer</c>. Without a tokenFile the sidecar has no credential and sends none (a control
/// plane on the directory source does not ask for one). Only an SVID from the control plane's own CA (the
/// tokenFile mode) is ever presented: a certificate from <c>spec.tls</c> files may come from a CA the control plane
/// does not know, and would fail the handshake.
/// </summary>
internal sealed class ControlPlaneCredentials
{
    private readonly string? _tokenFile;
    private readonly SvidStore? _svids;
    private readonly TimeProvider _time;

    public ControlPlaneCredentials(SidecarResource bootstrap, string bootstrapPath, SvidStore svids, TimeProvider time)
    {
        var controlPlane = bootstrap.Spec.ControlPlane ?? throw new ArgumentException("the Sidecar resource names no control plane", nameof(bootstrap));
        _tokenFile = controlPlane.TokenFile is { } file ? Path.GetFullPath(file, Path.GetDirectoryName(Path.GetFullPath(bootstrapPath))!) : null;
        _svids = _tokenFile is not null && new Uri(controlPlane.Address).Scheme == Uri.UriSchemeHttps ? svids : null;
        _time = time;
    }

    /// <summary>The SVID to present as the client certificate on the next attempt, or null to send the token instead.</summary>
    public X509Svid? Certificate()
    {
        // An expired SVID would fail the handshake; the token still works while the CA client renews.
        var now = _time.GetUtcNow();
        return _svids?.Current is { } svid && svid.NotBefore <= now && now < svid.NotAfter ? svid : null;
    }

    /// <summary>The call's headers: the bearer token unless a certificate is presented; null when there is nothing to send.</summary>
    /// <exception cref="IOException">The token file cannot be read (the attempt fails and is retried with backoff).</exception>
    public async Task<Metadata?> HeadersAsync(bool presentingCertificate, CancellationToken cancellationToken)
    {
        if (presentingCertificate || _tokenFile is null)
        {
            return null;
        }

        return new Metadata { { "authorization", "Bearer " + await ReadTokenAsync(_tokenFile, cancellationToken) } };
    }

    /// <summary>The token in <paramref name="path"/>, trimmed; any failure to read it is an IOException naming the file.</summary>
    public static async Task<string> ReadTokenAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            return (await File.ReadAllTextAsync(path, cancellationToken)).Trim();
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new IOException($"cannot read the token file '{path}': {ex.Message}", ex);
        }
    }
}
