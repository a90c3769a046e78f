using System.Collections.Immutable;
using System.Net;
using System.Text.Json;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes.Informers;

/// <summary>What an informer holds at one moment, immutable: every object by key ("namespace/name", or "name"
/// for cluster-scoped kinds), and the resourceVersion it is current to.</summary>
internal sealed record InformerCache<T>(ImmutableDictionary<string, T> Items, string ResourceVersion)
{
    public static InformerCache<T> Empty { get; } = new(ImmutableDictionary.Create<string, T>(StringComparer.Ordinal), string.Empty);
}

/// <summary>
/// How an informer's link to the API server is doing, for /ready, metrics and logs. <see cref="NotServed"/>: the API
/// server answered the list with 404, the kind is not installed (a CRD absent); it counts as listed and empty.
/// </summary>
internal sealed record InformerHealth(string Resource, bool Synced, bool Connected, DateTimeOffset? DisconnectedSince, string? LastError, long Relists, bool NotServed = false);

/// <summary>What every informer shows the source that runs them, whatever its kind.</summary>
internal interface IInformer
{
    string Resource { get; }

    /// <summary>Completes once the first full list is in: before that, what the informer holds is not the cluster.</summary>
    Task Synced { get; }

    InformerHealth Health { get; }

    /// <summary>Raised after each change of the cache (one watch event, or a whole relist at once).</summary>
    event Action? Changed;

    Task RunAsync(CancellationToken cancellationToken);
}

/// <summary>Timings of an informer; the defaults are client-go's.</summary>
internal sealed record InformerOptions
{
    /// <summary>Objects per list page (limit/continue): a large cluster is listed in pieces, never in one response.</summary>
    public int PageSize { get; init; } = 500;

    /// <summary>A watch asks the server to end it after a random time between this and twice this, so that watches of many
    /// control planes do not all reconnect at once, and a silently dead connection is noticed at the latest then.</summary>
    public TimeSpan MinWatchTimeout { get; init; } = TimeSpan.FromMinutes(5);

    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(250);

    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// List-then-watch of one kind, cluster-wide, with the semantics the API defines ("efficient detection
/// of changes"): a paginated list gives a consistent snapshot and its resourceVersion; the watch starts
/// there with bookmarks, and each event or bookmark moves the resume point on. A watch that ends (its
/// timeoutSeconds, a dropped connection) is reopened from the last resourceVersion seen, after a backoff
/// when it failed. A 410 Gone (the resume point was compacted away, as an ERROR event or the answer to the
/// call) is answered by a fresh list, built aside and swapped in whole: consumers never see an empty or
/// partial cache in between. While the API server cannot be reached the cache stays as it was.
/// A malformed object is skipped with a log line; the key keeps its last good version.
/// <para>
/// A list answered 404 means the kind is not served (a CRD that is not installed, or was removed, which deletes its
/// objects): the informer counts as synced with nothing in it, so an optional kind (Istio's, the Gateway API's)
/// never holds up the first state, and lists again with backoff (up to <see cref="InformerOptions.MaxBackoff"/>)
/// so that installing the CRD later is picked up without a restart.
/// </para>
/// </summary>
internal sealed class Informer<T> : IInformer
    where T : class, IKubernetesObject<V1ObjectMeta>
{
    private readonly IKubernetes _client;
    private readonly KubernetesResource<T> _resource;
    private readonly InformerOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile InformerCache<T> _cache = InformerCache<T>.Empty;
    private volatile InformerHealth _health;

    public Informer(IKubernetes client, KubernetesResource<T> resource, InformerOptions options, TimeProvider time, ILogger logger)
    {
        _client = client;
        _resource = resource;
        _options = options;
        _time = time;
        _logger = logger;
        _health = new InformerHealth(resource.Name, false, false, null, null, 0);
    }

    public string Resource => _resource.Name;

    public InformerCache<T> Current => _cache;

    public Task Synced => _synced.Task;

    public InformerHealth Health => _health;

    public event Action? Changed;

    public static string KeyOf(T item) =>
        item.Metadata.NamespaceProperty is { Length: > 0 } ns ? $"{ns}/{item.Metadata.Name}" : item.Metadata.Name;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var relist = true;
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (relist)
                {
                    await ListAsync(cancellationToken).ConfigureAwait(false);
                    relist = false;
                }
                else if (failures > 0)
                {
                    // Back after a failure: a watch shows nothing until its first event, which in a quiet cluster may be
                    // a minute away (the next bookmark). One object's list says at once whether the API server answers,
                    // so /ready and the metrics tell the truth; the cache is left alone and the watch resumes where it was.
                    await _resource.ListAsync(_client, new ListRequest(false, null, Limit: 1), cancellationToken).ConfigureAwait(false);
                    MarkConnected(_health.Relists);
                }

                var gone = await WatchAsync(cancellationToken).ConfigureAwait(false);
                failures = 0;
                if (gone)
                {
                    _logger.WatchExpired(Resource, _cache.ResourceVersion);
                    relist = true;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.Gone)
            {
                _logger.WatchExpired(Resource, _cache.ResourceVersion);
                relist = true;
            }
            catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.NotFound)
            {
                failures++;
                relist = true;
                var delay = Backoff(failures);
                NotServed(delay);
                try
                {
                    await Task.Delay(delay, _time, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or HttpOperationException or IOException or System.Runtime.Serialization.SerializationException or JsonException or OperationCanceledException or KubernetesException)
            {
                // Unreachable, refused, cut, or an answer that is not the API's: keep what is held, try again later.
                failures++;
                var now = _time.GetUtcNow();
                var health = _health;
                _health = health with { Connected = false, DisconnectedSince = health.DisconnectedSince ?? now, LastError = Reason(ex) };
                var delay = Backoff(failures);
                _logger.ApiServerUnreachable(Resource, Reason(ex), delay.TotalSeconds);
                try
                {
                    await Task.Delay(delay, _time, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Every page at one resourceVersion, then one swap. An expired continue token (410) starts the list over.</summary>
    private async Task ListAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var items = ImmutableDictionary.CreateBuilder<string, T>(StringComparer.Ordinal);
            string? next = null;
            string resourceVersion;
            var malformed = 0;
            try
            {
                do
                {
                    var page = await _resource.ListAsync(_client, new ListRequest(false, null, next, _options.PageSize), cancellationToken).ConfigureAwait(false);
                    foreach (var item in page.Items)
                    {
                        items[KeyOf(item)] = item;
                    }

                    foreach (var reason in page.Malformed)
                    {
                        malformed++;
                        _logger.MalformedObject(Resource, reason);
                    }

                    resourceVersion = page.ResourceVersion;
                    next = string.IsNullOrEmpty(page.Continue) ? null : page.Continue;
                }
                while (next is not null);
            }
            catch (HttpOperationException ex) when (next is not null && ex.Response.StatusCode == HttpStatusCode.Gone)
            {
                _logger.ContinueExpired(Resource);
                continue;
            }

            // Objects that are malformed now but were good before keep their last good version (never withdrawn by a bad edit).
            var before = _cache.Items;
            if (malformed > 0 && before.Count > 0)
            {
                foreach (var (key, old) in before)
                {
                    items.TryAdd(key, old);
                }
            }

            _cache = new InformerCache<T>(items.ToImmutable(), resourceVersion);
            var health = _health;
            var relists = _synced.Task.IsCompleted ? health.Relists + 1 : health.Relists;
            MarkConnected(relists);
            _logger.Listed(Resource, items.Count, resourceVersion);
            _synced.TrySetResult();
            Changed?.Invoke();
            return;
        }
    }

    /// <summary>One watch, to its end. True when it ended on 410 Gone (a relist is due).</summary>
    private async Task<bool> WatchAsync(CancellationToken cancellationToken)
    {
        var timeout = _options.MinWatchTimeout * (1 + Random.Shared.NextDouble());
        var gone = false;
        void OnError(Exception ex)
        {
            switch (ex)
            {
                case KubernetesException { Status.Code: 410 }:
                    gone = true;
                    break;
                case KubernetesException k:
                    _logger.WatchError(Resource, k.Status?.Message ?? k.Message);
                    break;
                default:
                    _logger.MalformedObject(Resource, ex.Message);
                    break;
            }
        }

        var request = new ListRequest(true, _cache.ResourceVersion, TimeoutSeconds: (int)timeout.TotalSeconds);
        try
        {
            await foreach (var (type, element) in _resource.WatchAsync(_client, request, OnError, cancellationToken).ConfigureAwait(false))
            {
                MarkConnected(_health.Relists);
                Apply(type, element);
            }
        }
        catch (EndOfStreamException)
        {
            // The watch ended before its first line (timeoutSeconds with nothing to say): the client library's way of saying so.
            MarkConnected(_health.Relists);
        }

        return gone;
    }

    private void Apply(WatchEventType type, JsonElement element)
    {
        var cache = _cache;
        if (type == WatchEventType.Bookmark)
        {
            if (ResourceVersionOf(element) is { } bookmark)
            {
                _cache = cache with { ResourceVersion = bookmark };
            }

            return;
        }

        if (!KubernetesResource<T>.TryRead(element, out var item, out var error))
        {
            // Skipped, but the resume point moves past it: it would fail the same way on every reconnect.
            _logger.MalformedObject(Resource, error);
            if (ResourceVersionOf(element) is { } skipped)
            {
                _cache = cache with { ResourceVersion = skipped };
            }

            return;
        }

        var key = KeyOf(item);
        var items = type == WatchEventType.Deleted ? cache.Items.Remove(key) : cache.Items.SetItem(key, item);
        _cache = new InformerCache<T>(items, item.Metadata.ResourceVersion ?? cache.ResourceVersion);
        Changed?.Invoke();
    }

    /// <summary>The kind is not served (404): listed, and empty. What it held before goes (its CRD is gone, and its objects with it).</summary>
    private void NotServed(TimeSpan retry)
    {
        var health = _health;
        var had = _cache.Items.Count > 0;
        if (had)
        {
            _cache = InformerCache<T>.Empty;
        }

        if (!health.NotServed)
        {
            _logger.KindNotServed(Resource, retry.TotalSeconds);
        }

        _health = new InformerHealth(Resource, true, true, null, null, health.Relists, NotServed: true);
        _synced.TrySetResult();
        if (had)
        {
            Changed?.Invoke();
        }
    }

    private void MarkConnected(long relists)
    {
        var health = _health;
        if (!health.Connected || health.Relists != relists || !health.Synced || health.NotServed)
        {
            if (health.DisconnectedSince is { } since)
            {
                _logger.ApiServerBack(Resource, (_time.GetUtcNow() - since).TotalSeconds);
            }

            _health = new InformerHealth(Resource, true, true, null, null, relists);
        }
    }

    /// <summary>Exponential, doubling from the initial delay to the cap, drawn from the upper half of the ceiling (jitter without ever retrying at once).</summary>
    private TimeSpan Backoff(int failures)
    {
        var ceiling = Math.Min(_options.MaxBackoff.TotalMilliseconds, _options.InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(failures - 1, 20)));
        return TimeSpan.FromMilliseconds(ceiling / 2 + Random.Shared.NextDouble() * ceiling / 2);
    }

    private static string? ResourceVersionOf(JsonElement element) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty("metadata", out var m) && m.ValueKind == JsonValueKind.Object &&
        m.TryGetProperty("resourceVersion", out var rv) && rv.ValueKind == JsonValueKind.String
            ? rv.GetString()
            : null;

    private static string Reason(Exception ex) => ex switch
    {
        HttpOperationException h => $"HTTP {(int)h.Response.StatusCode} {h.Response.ReasonPhrase}",
        _ => ex.InnerException is { } inner ? $"{ex.Message} ({inner.Message})" : ex.Message,
    };
}
