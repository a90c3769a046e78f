using System.Security.Cryptography;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Sidecar.Telemetry;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Configuration;

/// <summary>
/// Standalone mode: the configuration is one YAML file (a Sidecar resource plus the services and
/// routes it may use). The file is watched; a change is parsed and built aside, and swapped in only if
/// it is entirely valid. The snapshot's version is a hash of the file, so the same bytes always carry
/// the same version, across restarts too.
/// </summary>
internal sealed class BootstrapFileSource : IConfigSource, IDisposable
{
    private static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(150);
    private readonly string _path;
    private readonly SnapshotStore _store;
    private readonly ISnapshotActivator _activator;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Lock _reloadLock = new();
    private FileSystemWatcher? _watcher;
    private ITimer? _debounceTimer;

    private readonly SidecarOverride? _podOverride;

    public BootstrapFileSource(string path, SidecarOverride? podOverride, SnapshotStore store, ISnapshotActivator activator, ILogger<BootstrapFileSource> logger, TimeProvider time)
    {
        _path = Path.GetFullPath(path);
        _podOverride = podOverride;
        _store = store;
        _activator = activator;
        _logger = logger;
        _time = time;
    }

    /// <summary>Loads the file for the first time; throws <see cref="ConfigException"/> if it is unusable.</summary>
    public SidecarSnapshot LoadInitial()
    {
        var snapshot = Load(File.ReadAllBytes(_path));
        _activator.Activate(snapshot);
        _logger.ConfigApplied(snapshot.Version, snapshot.Source);
        return snapshot;
    }

    /// <summary>
    /// Watches the file's directory rather than the file: editors and Kubernetes ConfigMaps replace
    /// files by rename, which a watch on the file itself would miss.
    /// </summary>
    public void StartWatching()
    {
        _debounceTimer = _time.CreateTimer(_ => Reload(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _watcher = new FileSystemWatcher(Path.GetDirectoryName(_path)!)
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
            IncludeSubdirectories = false,
        };
        _watcher.Changed += OnChanged;
        _watcher.Created += OnChanged;
        _watcher.Renamed += OnChanged;
        _watcher.EnableRaisingEvents = true;
    }

    /// <summary>Reads the file again now; public so that tests and the admin port need not wait for the watcher.</summary>
    public void Reload()
    {
        lock (_reloadLock)
        {
            byte[] bytes;
            try
            {
                bytes = File.ReadAllBytes(_path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Mid-rename, or made unreadable: the snapshot in force keeps serving, the next change is read again.
                _logger.ConfigReadFailed(_path, ex.Message);
                return;
            }

            var version = VersionOf(bytes);
            var current = _store.Current;
            if (version == current.Version)
            {
                return;
            }

            try
            {
                var snapshot = Load(bytes);
                if (snapshot.Sidecar.Spec.Listeners != current.Sidecar.Spec.Listeners)
                {
                    _logger.ListenerChangeIgnored($"{current.Sidecar.Spec.Listeners} -> {snapshot.Sidecar.Spec.Listeners}");
                }

                _activator.Activate(snapshot);
                _logger.ConfigApplied(snapshot.Version, snapshot.Source);
            }
            catch (ConfigException ex)
            {
                _store.Reject(new ConfigRejection(version, _time.GetUtcNow(), ex.Errors));
                _logger.ConfigRejected(_path, current.Version, ex.Message);
            }
        }
    }

    public void Dispose()
    {
        _watcher?.Dispose();
        _debounceTimer?.Dispose();
    }

    private void OnChanged(object sender, FileSystemEventArgs e) =>
        _debounceTimer?.Change(Debounce, Timeout.InfiniteTimeSpan);

    private SidecarSnapshot Load(byte[] bytes)
    {
        var text = System.Text.Encoding.UTF8.GetString(bytes);
        var parsed = ResourceParser.ParseText(text, _path);
        if (_podOverride is not null)
        {
            // Every reload too: the pod's override stays over whatever the file now says.
            parsed = _podOverride.ApplyTo(parsed);
        }

        foreach (var warning in parsed.Warnings)
        {
            _logger.ConfigWarning(warning.ToString());
        }

        return SnapshotBuilder.Build(parsed, VersionOf(bytes), _path, _time.GetUtcNow());
    }

    // The override is part of the content: two pods sharing a file but not an override run different configs.
    private string VersionOf(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(
        _podOverride is null ? bytes : [.. bytes, .. System.Text.Encoding.UTF8.GetBytes("\n" + _podOverride.ToText())]))[..12];
}
