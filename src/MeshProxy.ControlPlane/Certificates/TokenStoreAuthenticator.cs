using MeshProxy.Identity.Bootstrap;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Certificates;

/// <summary>
/// The local bootstrap tokens, following the store file as <c>meshproxy token create</c> rewrites it: a
/// token created while the control plane runs works at once, and a revoked one stops working. The file is
/// opened again when its timestamp or size changes (one stat per request; CSRs are rare). A store that
/// cannot be read (wrong mode, bad JSON) is logged and the last good one stays in force.
/// </summary>
internal sealed class TokenStoreAuthenticator : IWorkloadAuthenticator
{
    private readonly string _path;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger<TokenStoreAuthenticator> _logger;
    private readonly Lock _lock = new();
    private LocalTokenStore _store;
    private (DateTime Written, long Length) _stamp;

    private TokenStoreAuthenticator(string path, LocalTokenStore store, (DateTime, long) stamp, ILoggerFactory loggers)
    {
        _path = path;
        _store = store;
        _stamp = stamp;
        _loggers = loggers;
        _logger = loggers.CreateLogger<TokenStoreAuthenticator>();
    }

    /// <exception cref="InvalidDataException">The store exists but is readable by others or is not a token store.</exception>
    public static TokenStoreAuthenticator Open(string path, ILoggerFactory loggers)
    {
        var stamp = Stamp(path);
        return new TokenStoreAuthenticator(path, LocalTokenStore.Open(path, loggers.CreateLogger<LocalTokenStore>()), stamp, loggers);
    }

    public ValueTask<WorkloadIdentity?> AuthenticateAsync(string bearerToken, CancellationToken cancellationToken) =>
        Current().AuthenticateAsync(bearerToken, cancellationToken);

    private LocalTokenStore Current()
    {
        var stamp = Stamp(_path);
        lock (_lock)
        {
            if (stamp == _stamp)
            {
                return _store;
            }

            try
            {
                _store = LocalTokenStore.Open(_path, _loggers.CreateLogger<LocalTokenStore>());
                _logger.TokenStoreReloaded(_path, _store.Workloads.Count);
            }
            catch (Exception ex) when (ex is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                _logger.TokenStoreReloadFailed(_path, ex.Message);
            }

            // Remembered even on failure: the same broken file is reported once, not on every request.
            _stamp = stamp;
            return _store;
        }
    }

    private static (DateTime, long) Stamp(string path)
    {
        var info = new FileInfo(path);
        return info.Exists ? (info.LastWriteTimeUtc, info.Length) : (DateTime.MinValue, -1);
    }
}
