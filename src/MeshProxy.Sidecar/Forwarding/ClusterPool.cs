using System.Net.Http;
using MeshProxy.Sidecar.Resilience;
using MeshProxy.Sidecar.Routing;

namespace MeshProxy.Sidecar.Forwarding;

/// <summary>
/// One cluster's upstream connections: its own SocketsHttpHandler pair (plaintext and mutual TLS), built
/// with the cluster's idle timeout and connection limit. Reference-counted so that a pool a new snapshot
/// no longer uses is disposed only once the requests still sending through it are done.
/// </summary>
internal sealed class ClusterPool : IClusterConnections
{
    private ReferenceCount _references = new(); // the transport's own, given up by Retire

    public ClusterPool(PoolSettings settings, HttpMessageInvoker plaintext, HttpMessageInvoker mtls, HandlerGenerations? generations = null)
    {
        Settings = settings;
        Plaintext = plaintext;
        Mtls = mtls;
        Generations = generations;
    }

    public PoolSettings Settings { get; }

    public HttpMessageInvoker Plaintext { get; }

    public HttpMessageInvoker Mtls { get; }

    /// <summary>Per-endpoint handler generations for HTTP/2 attempts when the pool limits requests per connection; null otherwise.</summary>
    public HandlerGenerations? Generations { get; }

    /// <summary>False once the pool is retired and drained: the caller must send elsewhere.</summary>
    public bool TryAcquire() => _references.TryAcquire();

    public void Release()
    {
        if (_references.Release())
        {
            // Idle connections close now; none is in use, since every sender has released.
            Plaintext.Dispose();
            Mtls.Dispose();
            Generations?.Dispose();
        }
    }

    /// <summary>No new request will find this pool; it closes when the last one in flight is done.</summary>
    public void Retire() => Release();
}
