using System.Security.Cryptography;
using System.Text;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using Microsoft.Extensions.Logging;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.ControlPlane.Resources;

/// <summary>
/// The configuration directory: every *.yaml/*.yml file in it (not recursive), watched, with bursts of
/// changes debounced. Each resource is tracked by its key (kind/namespace/name): when a file gains an
/// error, the resources that were good in it and are now missing from it (the broken ones) keep their
/// last good version until the file is fixed; a file that is valid again, or deleted, is taken as
/// written. So one bad edit never takes anything else down, and never silently removes what it broke.
/// What parses is then checked as a set (<see cref="PushGate"/>): a resource the sidecars would refuse
/// is held back, its last version that passed serving meanwhile.
/// </summary>
internal sealed class ResourceDirectory : IConfigSource, IDisposable
{
    private readonly string _directory;
    private readonly TimeSpan _debounce;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, FileState> _files = new(StringComparer.Ordinal);
    private readonly PushGate _gate = new();
    private FileSystemWatcher? _watcher;
    private ITimer? _timer;
    private volatile ConfigState _current = ConfigState.Empty;

    public ResourceDirectory(string directory, TimeSpan debounce, ILogger<ResourceDirectory> logger, TimeProvider? time = null)
    {
        _directory = Path.GetFullPath(directory);
        _debounce = debounce;
        _logger = logger;
        _time = time ?? TimeProvider.System;
    }

    public ConfigState Current => _current;

    public string Directory => _directory;

    public string Description => _directory;

    /// <summary>Raised (on the reload thread) after a reload that changed what is served or what is wrong.</summary>
    public event Action<ConfigState>? Changed;

    /// <summary>
    /// Reads the directory and starts watching it. Throws <see cref="DirectoryNotFoundException"/> when it does not exist
    /// and <see cref="ConfigException"/> with every error when anything in it is invalid: at start-up there is no last
    /// good version to keep, and serving without the broken resources would take them away from every sidecar (which
    /// keep their own last good snapshots while the control plane is down). Once started, errors never stop it.
    /// </summary>
    public void Start()
    {
        if (!System.IO.Directory.Exists(_directory))
        {
            throw new DirectoryNotFoundException($"configuration directory '{_directory}' does not exist");
        }

        Reload();
        if (_current.Errors.Count > 0)
        {
            throw new ConfigException(_current.Errors);
        }

        _timer = _time.CreateTimer(_ => Reload(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _watcher = new FileSystemWatcher(_directory)
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
            IncludeSubdirectories = false,
        };
        _watcher.Changed += OnChanged;
        _watcher.Created += OnChanged;
        _watcher.Deleted += OnChanged;
        _watcher.Renamed += OnChanged;
        _watcher.Error += (_, e) =>
        {
            // An overflowed watcher has lost events: read everything again rather than trust it.
            _logger.WatcherError(e.GetException().Message);
            _timer?.Change(_debounce, Timeout.InfiniteTimeSpan);
        };
        _watcher.EnableRaisingEvents = true;
    }

    /// <summary>Reads the directory again now. Files whose bytes did not change are not parsed again.</summary>
    public void Reload()
    {
        lock (_lock)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var changed = false;
            foreach (var path in ListFiles())
            {
                seen.Add(path);
                byte[] bytes;
                try
                {
                    bytes = File.ReadAllBytes(path);
                }
                catch (IOException ex)
                {
                    _logger.FileReadFailed(path, ex.Message);
                    continue; // half-written or vanished: the next event brings it back
                }
                catch (UnauthorizedAccessException ex)
                {
                    _logger.FileReadFailed(path, ex.Message);
                    continue;
                }

                var hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
                _files.TryGetValue(path, out var previous);
                if (previous?.Hash == hash)
                {
                    continue;
                }

                _files[path] = ParseFile(path, Encoding.UTF8.GetString(bytes), hash, previous);
                changed = true;
            }

            foreach (var gone in _files.Keys.Where(f => !seen.Contains(f)).ToList())
            {
                _files.Remove(gone);
                changed = true;
            }

            if (!changed && _current.Generation > 0)
            {
                return;
            }

            var state = _gate.Apply(Merge(_current.Generation + 1));
            if (_current.Generation > 0 && SameContent(state, _current))
            {
                return;
            }

            var before = _current;
            _current = state;
            foreach (var error in state.Errors)
            {
                _logger.InvalidResource(error.ToString());
            }

            foreach (var warning in state.Warnings)
            {
                _logger.ResourceWarning(warning.ToString());
            }

            foreach (var key in state.KeptLastGood)
            {
                _logger.KeptLastGood(key);
            }

            LogHeldBack(before, state);
            _logger.ConfigLoaded(state.Generation, state.Resources.Count, state.InvalidResources, state.HeldBack.Count);
        }

        Changed?.Invoke(_current);
    }

    public void Dispose()
    {
        _watcher?.Dispose();
        _timer?.Dispose();
    }

    private void OnChanged(object sender, FileSystemEventArgs e) => _timer?.Change(_debounce, Timeout.InfiniteTimeSpan);

    private IEnumerable<string> ListFiles() =>
        System.IO.Directory.EnumerateFiles(_directory)
            .Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
            .Where(f => !Path.GetFileName(f).StartsWith('.'))
            .Order(StringComparer.Ordinal);

    private static FileState ParseFile(string path, string text, string hash, FileState? previous)
    {
        var parsed = ResourceParser.ParseText(text, path);
        var documents = SliceDocuments(text, out var documentCount);
        var good = new Dictionary<string, StoredResource>(StringComparer.Ordinal);
        foreach (var resource in parsed.Resources)
        {
            var yaml = documents.TryGetValue(resource.Source.Line, out var doc) ? doc : string.Empty;
            good[resource.Key] = new StoredResource(resource, yaml, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(yaml)))[..12]);
        }

        var kept = new List<string>();
        if (!parsed.IsValid && previous is not null)
        {
            foreach (var (key, old) in previous.Resources)
            {
                if (!good.ContainsKey(key))
                {
                    good[key] = old;
                    kept.Add(key);
                }
            }
        }

        // A document that did not become a resource (broken, or a duplicate) is one invalid resource; a
        // file that is not YAML at all counts once.
        var invalid = documentCount < 0 ? 1 : Math.Max(0, documentCount - parsed.Resources.Count);
        return new FileState(hash, good, parsed.Errors, parsed.Warnings, kept, parsed.IsValid ? 0 : Math.Max(invalid, 1));
    }

    /// <summary>
    /// The text of each document, keyed by the line its root mapping starts on (which is the line the
    /// parser records as the resource's source). Sent as written, comments and all: the document is the
    /// run of lines between two "---" markers that holds that line. (YamlDotNet's nodes carry no end
    /// position for mappings, so the markers are the reliable boundary.)
    /// </summary>
    private static Dictionary<int, string> SliceDocuments(string text, out int documentCount)
    {
        var result = new Dictionary<int, string>();
        if (!YamlDocuments.TryLoad(text, string.Empty, out var documents, out _))
        {
            documentCount = -1;
            return result;
        }

        var lines = text.Split('\n');
        var markers = new List<int> { 0 }; // 1-based line numbers of "---" lines; 0 = before the first line
        for (var i = 0; i < lines.Length; i++)
        {
            if (lines[i].StartsWith("---", StringComparison.Ordinal) || lines[i].StartsWith("...", StringComparison.Ordinal))
            {
                markers.Add(i + 1);
            }
        }

        markers.Add(lines.Length + 1);
        documentCount = 0;
        foreach (var document in documents)
        {
            if (document.RootNode is YamlScalarNode { Value: null or "" })
            {
                continue;
            }

            documentCount++;
            if (document.RootNode is not YamlMappingNode root)
            {
                continue;
            }

            var line = (int)root.Start.Line;
            var after = markers.FindLastIndex(m => m < line);
            var from = markers[after]; // the marker line itself is excluded
            var to = markers[after + 1];
            result[line] = string.Join('\n', lines[from..(to - 1)]).Trim('\n', '\r') + "\n";
        }

        return result;
    }

    private ConfigState Merge(long generation)
    {
        var resources = new List<StoredResource>();
        var owners = new Dictionary<string, StoredResource>(StringComparer.Ordinal);
        var errors = new List<ConfigDiagnostic>();
        var warnings = new List<ConfigDiagnostic>();
        var kept = new List<string>();
        var invalid = 0;
        foreach (var (_, file) in _files.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            errors.AddRange(file.Errors);
            warnings.AddRange(file.Warnings);
            kept.AddRange(file.KeptLastGood);
            invalid += file.InvalidResources;
            foreach (var resource in file.Resources.Values.OrderBy(r => r.Resource.Source.Line))
            {
                if (owners.TryGetValue(resource.Key, out var first))
                {
                    // Same rule as within a file: the first definition (file name order) wins.
                    errors.Add(new ConfigDiagnostic(resource.Resource.Source.File, resource.Resource.Source.Line, "metadata.name",
                        $"duplicate {resource.Resource.Kind} '{resource.Resource.Metadata.Namespace}/{resource.Resource.Metadata.Name}' (first defined at {first.Resource.Source})"));
                    invalid++;
                    continue;
                }

                owners[resource.Key] = resource;
                resources.Add(resource);
            }
        }

        return new ConfigState(generation, resources, errors, warnings, kept, invalid);
    }

    private static bool SameContent(ConfigState a, ConfigState b) =>
        a.Resources.Count == b.Resources.Count &&
        a.Resources.Zip(b.Resources).All(p => p.First.Key == p.Second.Key && p.First.Version == p.Second.Version && p.First.Resource.Source == p.Second.Resource.Source) &&
        a.Errors.SequenceEqual(b.Errors) &&
        a.Warnings.SequenceEqual(b.Warnings) &&
        a.HeldBack.Count == b.HeldBack.Count &&
        a.HeldBack.Zip(b.HeldBack).All(p => p.First.SameAs(p.Second));

    /// <summary>
    /// Once per change, not at every generation: a resource newly held back (or held back again in a new
    /// version, or with a different fallback), and one that is no longer held back.
    /// </summary>
    private void LogHeldBack(ConfigState previous, ConfigState state)
    {
        foreach (var held in state.HeldBack)
        {
            if (previous.HeldBack.Any(p => p.SameAs(held)))
            {
                continue;
            }

            var errors = string.Join("; ", held.Errors);
            if (held.ServingVersion is { } serving)
            {
                _logger.HeldBackServingLastGood(held.Key, held.Refused.Version, serving, errors);
            }
            else
            {
                _logger.HeldBack(held.Key, held.Refused.Version, errors);
            }
        }

        foreach (var cleared in previous.HeldBack.Where(p => !state.HeldBack.Any(h => h.Key == p.Key)))
        {
            _logger.NoLongerHeldBack(cleared.Key);
        }
    }

    private sealed record FileState(
        string Hash,
        IReadOnlyDictionary<string, StoredResource> Resources,
        IReadOnlyList<ConfigDiagnostic> Errors,
        IReadOnlyList<ConfigDiagnostic> Warnings,
        IReadOnlyList<string> KeptLastGood,
        int InvalidResources);
}
