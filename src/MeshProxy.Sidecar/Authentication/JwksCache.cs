using System.Collections.Concurrent;
using MeshProxy.Config.Resources;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Authentication;

/// <summary>How fetched JWK Sets are kept: Istio's istiod refreshes every 20 minutes by default.</summary>
internal sealed class JwksCacheOptions
{
    /// <summary>How long a fetched set is used before it is fetched again (in the background, the old set serving meanwhile).</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(20);

    /// <summary>After a failed fetch, how long until the next try (the last good set keeps serving meanwhile).</summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How often a jwksFile is read again. A mounted Secret or ConfigMap changes on disk within about a minute of
    /// its update (the kubelet's sync period), and a read is cheap, so this is short.
    /// </summary>
    public TimeSpan FileRefreshInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>One fetch, connection to last byte.</summary>
    public TimeSpan FetchTimeout { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// The JWK Sets of jwksUri and jwksFile rules, fetched (or read) by the sidecar and shared by every snapshot (a new
/// snapshot does not refetch). A source starting with '/' is a file (the parser requires absolute paths and
/// absolute http(s) URLs, so the two cannot be confused); it is re-read every
/// <see cref="JwksCacheOptions.FileRefreshInterval"/>, with the same keep-the-last-good rules as a fetch. A set is fetched on first use (that first request waits, up to the fetch timeout), then served from
/// memory and refreshed in the background once <see cref="JwksCacheOptions.RefreshInterval"/> has passed on the
/// injected clock. A failed or unusable fetch (unreachable, not 200, not a JWK Set, no usable key) keeps the last
/// good set: an outage of the issuer's key server does not log every user out. Until a first fetch succeeds,
/// tokens of that issuer are refused (401), retried every <see cref="JwksCacheOptions.RetryInterval"/>.
/// The fetch goes straight out of the sidecar (its own traffic is not captured), not through its outbound
/// listener: see README.md in this folder for why.
/// </summary>
internal sealed class JwksCache : IDisposable
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly JwksCacheOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<JwksCache> _logger;
    private readonly HttpClient _client;

    public JwksCache(JwksCacheOptions options, TimeProvider time, ILogger<JwksCache> logger)
    {
        _options = options;
        _time = time;
        _logger = logger;
        _client = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            ConnectTimeout = options.FetchTimeout,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        })
        {
            Timeout = Timeout.InfiniteTimeSpan, // bounded per fetch on the injected clock
            MaxResponseContentBufferSize = JsonWebKeySet.MaxBytes,
        };
    }

    /// <summary>The set for <paramref name="uri"/> (a URL or a file's absolute path); null when it has never been fetched successfully.</summary>
    public ValueTask<JwtKeySet?> GetAsync(string uri, CancellationToken cancellationToken)
    {
        var entry = _entries.GetOrAdd(uri, static u => new Entry(u));
        var fetch = StartIfDue(entry);
        if (entry.Keys is { } keys)
        {
            return new ValueTask<JwtKeySet?>(keys);
        }

        return fetch is null ? new ValueTask<JwtKeySet?>((JwtKeySet?)null) : WaitForFirstAsync(entry, fetch, cancellationToken);
    }

    public void Dispose() => _client.Dispose();

    private static async ValueTask<JwtKeySet?> WaitForFirstAsync(Entry entry, Task fetch, CancellationToken cancellationToken)
    {
        await fetch.WaitAsync(cancellationToken).ConfigureAwait(false);
        return entry.Keys;
    }

    /// <summary>The fetch in flight, or a new one when the entry is due; null when nothing is due.</summary>
    private Task? StartIfDue(Entry entry)
    {
        var now = _time.GetUtcNow().UtcTicks;
        if (now < entry.NextFetchAt && entry.Fetch is not { IsCompleted: false })
        {
            return null;
        }

        lock (entry)
        {
            if (entry.Fetch is { IsCompleted: false } running)
            {
                return running;
            }

            if (now < entry.NextFetchAt)
            {
                return null;
            }

            // Pushed out now so that concurrent callers do not start another fetch; the outcome resets it.
            entry.NextFetchAt = now + _options.RetryInterval.Ticks;
            entry.Fetch = Task.Run(() => FetchAsync(entry));
            return entry.Fetch;
        }
    }

    private async Task FetchAsync(Entry entry)
    {
        string? failure;
        JwtKeySet? fetched = null;
        try
        {
            using var timeout = new CancellationTokenSource(_options.FetchTimeout, _time);
            if (entry.IsFile)
            {
                (fetched, failure) = Parse(await ReadFileBoundedAsync(entry.Uri, timeout.Token).ConfigureAwait(false));
            }
            else
            {
                using var response = await _client.GetAsync(entry.Uri, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
                (fetched, failure) = response.IsSuccessStatusCode
                    ? Parse(await ReadBoundedAsync(response.Content, timeout.Token).ConfigureAwait(false))
                    : (null, $"HTTP {(int)response.StatusCode}");
            }

            if (fetched is { Skipped.Count: > 0 })
            {
                AuthenticationLog.JwksKeysSkipped(_logger, entry.Uri, string.Join("; ", fetched.Skipped));
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException or UnauthorizedAccessException)
        {
            failure = ex is OperationCanceledException ? $"no answer within {_options.FetchTimeout.TotalSeconds:0.#} s" : ex.Message;
        }

        var now = _time.GetUtcNow().UtcTicks;
        if (failure is null)
        {
            entry.Keys = fetched;
            entry.NextFetchAt = now + (entry.IsFile ? _options.FileRefreshInterval : _options.RefreshInterval).Ticks;
            AuthenticationLog.JwksFetched(_logger, entry.Uri, fetched!.Count);
        }
        else
        {
            entry.NextFetchAt = now + _options.RetryInterval.Ticks;
            AuthenticationLog.JwksFetchFailed(_logger, entry.Uri, failure, entry.Keys is null ? "no keys yet: its tokens are refused" : $"keeping the last good set ({entry.Keys.Count} keys)");
        }
    }

    /// <summary>The keys of a body (null: larger than a JWK Set may be), or why there are none.</summary>
    private static (JwtKeySet? Keys, string? Failure) Parse(byte[]? body)
    {
        if (body is null)
        {
            return (null, $"the body is larger than {JsonWebKeySet.MaxBytes} bytes");
        }

        if (!JsonWebKeySet.TryParse(body, out var set, out var why))
        {
            return (null, $"the body {why}");
        }

        var keys = JwtKeySet.Build(set);
        return (keys, keys.Count == 0 ? "no key in the set can verify tokens" : null);
    }

    private static async Task<byte[]?> ReadFileBoundedAsync(string path, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 4096, useAsync: true);
        return await ReadBoundedAsync(stream, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<byte[]?> ReadBoundedAsync(HttpContent content, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength > JsonWebKeySet.MaxBytes)
        {
            return null;
        }

        await using var stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        return await ReadBoundedAsync(stream, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<byte[]?> ReadBoundedAsync(Stream stream, CancellationToken cancellationToken)
    {
        var buffer = new byte[JsonWebKeySet.MaxBytes + 1];
        var total = 0;
        int read;
        while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken).ConfigureAwait(false)) > 0)
        {
            total += read;
        }

        return total > JsonWebKeySet.MaxBytes ? null : buffer[..total];
    }

    private sealed class Entry(string uri)
    {
        private volatile JwtKeySet? _keys;

        public string Uri { get; } = uri;

        public bool IsFile { get; } = uri.StartsWith('/');

        public JwtKeySet? Keys { get => _keys; set => _keys = value; }

        private long _nextFetchAt = long.MinValue;
        private volatile Task? _fetch;

        /// <summary>UTC ticks on the injected clock; read without the lock, hence a long read atomically.</summary>
        public long NextFetchAt { get => Volatile.Read(ref _nextFetchAt); set => Volatile.Write(ref _nextFetchAt, value); }

        public Task? Fetch { get => _fetch; set => _fetch = value; }
    }
}
