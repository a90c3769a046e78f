using System.Text.Json;
using System.Text.Json.Serialization;
using k8s;
using k8s.Autorest;
using k8s.Models;

// WatchAsync<T, L> over the list call is marked obsolete in favour of the typed WatchList*Async methods. Those
// read each object into its type inside the library; this reads the events as JSON and each object itself, so
// that a malformed object is skipped while its resourceVersion still moves the resume point on.
#pragma warning disable CS0618

namespace MeshProxy.ControlPlane.Kubernetes.Informers;

/// <summary>The query of one list or watch call: what the API's list/watch semantics need, nothing more.</summary>
internal sealed record ListRequest(bool Watch, string? ResourceVersion, string? Continue = null, int? Limit = null, int? TimeoutSeconds = null)
{
    /// <summary>Bookmarks are asked for on every watch: they move the resume point on without any change, so a reconnect rarely needs a relist.</summary>
    public bool? AllowWatchBookmarks => Watch ? true : null;
}

/// <summary>One page of a list: the items that could be read, the ones that could not (with why), and where the list stands.</summary>
internal sealed record ListPage<T>(IReadOnlyList<T> Items, IReadOnlyList<string> Malformed, string ResourceVersion, string? Continue);

/// <summary>
/// A kind an <see cref="Informer{T}"/> can list and watch, cluster-wide: how to make the list call (the
/// same call, with <c>watch=true</c>, opens the watch) and how to read its page. Core and built-in kinds
/// go through their typed KubernetesClient operations; any other group/version/plural through
/// <see cref="Custom{T}"/>, whose items are read one by one so that one malformed object is skipped, not
/// the whole list.
/// </summary>
internal sealed class KubernetesResource<T>
    where T : class, IKubernetesObject<V1ObjectMeta>
{
    private readonly Func<IKubernetes, ListRequest, CancellationToken, Task<ListPage<T>>> _list;
    private readonly Func<IKubernetes, ListRequest, Action<Exception>, CancellationToken, IAsyncEnumerable<(WatchEventType Type, JsonElement Object)>> _watch;

    private KubernetesResource(
        string name,
        Func<IKubernetes, ListRequest, CancellationToken, Task<ListPage<T>>> list,
        Func<IKubernetes, ListRequest, Action<Exception>, CancellationToken, IAsyncEnumerable<(WatchEventType, JsonElement)>> watch)
    {
        Name = name;
        _list = list;
        _watch = watch;
    }

    /// <summary>For logs, metrics and /ready: "services", "endpointslices.discovery.k8s.io"...</summary>
    public string Name { get; }

    public static KubernetesResource<V1Namespace> Namespaces { get; } = Typed<V1Namespace, V1NamespaceList>("namespaces", (c, r, ct) =>
        c.CoreV1.ListNamespaceWithHttpMessagesAsync(r.AllowWatchBookmarks, r.Continue, limit: r.Limit, resourceVersion: r.ResourceVersion, timeoutSeconds: r.TimeoutSeconds, watch: r.Watch, cancellationToken: ct));

    public static KubernetesResource<V1Service> Services { get; } = Typed<V1Service, V1ServiceList>("services", (c, r, ct) =>
        c.CoreV1.ListServiceForAllNamespacesWithHttpMessagesAsync(r.AllowWatchBookmarks, r.Continue, limit: r.Limit, resourceVersion: r.ResourceVersion, timeoutSeconds: r.TimeoutSeconds, watch: r.Watch, cancellationToken: ct));

    public static KubernetesResource<V1Pod> Pods { get; } = Typed<V1Pod, V1PodList>("pods", (c, r, ct) =>
        c.CoreV1.ListPodForAllNamespacesWithHttpMessagesAsync(r.AllowWatchBookmarks, r.Continue, limit: r.Limit, resourceVersion: r.ResourceVersion, timeoutSeconds: r.TimeoutSeconds, watch: r.Watch, cancellationToken: ct));

    public static KubernetesResource<V1EndpointSlice> EndpointSlices { get; } = Typed<V1EndpointSlice, V1EndpointSliceList>("endpointslices.discovery.k8s.io", (c, r, ct) =>
        c.DiscoveryV1.ListEndpointSliceForAllNamespacesWithHttpMessagesAsync(r.AllowWatchBookmarks, r.Continue, limit: r.Limit, resourceVersion: r.ResourceVersion, timeoutSeconds: r.TimeoutSeconds, watch: r.Watch, cancellationToken: ct));

    /// <summary>
    /// ConfigMaps of one name in every namespace (the trust bundle's): the API server selects them
    /// (<c>fieldSelector=metadata.name=...</c>), so a cluster's other ConfigMaps are never listed, held or watched.
    /// </summary>
    public static KubernetesResource<V1ConfigMap> ConfigMapsNamed(string name) => Typed<V1ConfigMap, V1ConfigMapList>("configmaps", (c, r, ct) =>
        c.CoreV1.ListConfigMapForAllNamespacesWithHttpMessagesAsync(r.AllowWatchBookmarks, r.Continue, fieldSelector: $"metadata.name={name}", limit: r.Limit, resourceVersion: r.ResourceVersion, timeoutSeconds: r.TimeoutSeconds, watch: r.Watch, cancellationToken: ct));

    /// <summary>Any served group/version/plural (a CRD, Gateway API), cluster-wide, read into <typeparamref name="T"/> item by item.</summary>
    public static KubernetesResource<T> Custom(string group, string version, string plural)
    {
        Task<HttpOperationResponse<JsonItemsList>> Call(IKubernetes c, ListRequest r, CancellationToken ct) =>
            c.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<JsonItemsList>(
                group, version, plural, r.AllowWatchBookmarks, r.Continue, limit: r.Limit, resourceVersion: r.ResourceVersion,
                timeoutSeconds: r.TimeoutSeconds, watch: r.Watch, cancellationToken: ct);

        return new KubernetesResource<T>(
            $"{plural}.{group}",
            async (c, r, ct) =>
            {
                using var response = await Call(c, r, ct).ConfigureAwait(false);
                var items = new List<T>();
                var malformed = new List<string>();
                foreach (var element in response.Body.Items ?? [])
                {
                    if (TryRead(element, out var item, out var error))
                    {
                        items.Add(item);
                    }
                    else
                    {
                        malformed.Add(error);
                    }
                }

                return new ListPage<T>(items, malformed, response.Body.Metadata?.ResourceVersion ?? string.Empty, response.Body.Metadata?.ContinueProperty);
            },
            (c, r, onError, ct) => Call(c, r, ct).WatchAsync<JsonElement, JsonItemsList>(onError, ct));
    }

    public Task<ListPage<T>> ListAsync(IKubernetes client, ListRequest request, CancellationToken cancellationToken) =>
        _list(client, request, cancellationToken);

    /// <summary>
    /// The watch's events, objects left as JSON (read with <see cref="TryRead"/>, so that one malformed object is
    /// skipped, not the stream). ERROR events and unreadable lines go to <paramref name="onError"/>
    /// (a KubernetesException carrying the Status, or the JSON error) and the stream goes on to its end.
    /// </summary>
    public IAsyncEnumerable<(WatchEventType Type, JsonElement Object)> WatchAsync(IKubernetes client, ListRequest request, Action<Exception> onError, CancellationToken cancellationToken) =>
        _watch(client, request, onError, cancellationToken);

    /// <summary>Reads one object; false with the reason when its JSON does not fit the type (a wrong field type, no metadata.name).</summary>
    public static bool TryRead(JsonElement element, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out T? item, out string error)
    {
        try
        {
            item = KubernetesJson.Deserialize<T>(element.GetRawText());
            if (item?.Metadata?.Name is { Length: > 0 })
            {
                error = string.Empty;
                return true;
            }

            error = "no metadata.name";
        }
        catch (JsonException ex)
        {
            error = ex.Message;
        }
        catch (FormatException ex)
        {
            error = ex.Message;
        }

        item = null;
        error = $"{Describe(element)}: {error}";
        return false;
    }

    private static KubernetesResource<TItem> Typed<TItem, TList>(string name, Func<IKubernetes, ListRequest, CancellationToken, Task<HttpOperationResponse<TList>>> call)
        where TItem : class, IKubernetesObject<V1ObjectMeta>
        where TList : IKubernetesObject<V1ListMeta>, IItems<TItem>
    {
        return new KubernetesResource<TItem>(
            name,
            async (c, r, ct) =>
            {
                // A built-in kind's objects were validated by the API server, so a list reads whole or not at all.
                using var response = await call(c, r, ct).ConfigureAwait(false);
                return new ListPage<TItem>([.. response.Body.Items ?? []], [], response.Body.Metadata?.ResourceVersion ?? string.Empty, response.Body.Metadata?.ContinueProperty);
            },
            (c, r, onError, ct) => call(c, r, ct).WatchAsync<JsonElement, TList>(onError, ct));
    }

    private static string Describe(JsonElement element)
    {
        if (element.ValueKind == JsonValueKind.Object && element.TryGetProperty("metadata", out var metadata) && metadata.ValueKind == JsonValueKind.Object)
        {
            var ns = metadata.TryGetProperty("namespace", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() + "/" : string.Empty;
            var name = metadata.TryGetProperty("name", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : "?";
            return ns + name;
        }

        return "an object without metadata";
    }
}

/// <summary>A list whose items are kept as JSON, for <see cref="KubernetesResource{T}.Custom"/>.</summary>
internal sealed class JsonItemsList
{
    [JsonPropertyName("metadata")]
    public V1ListMeta? Metadata { get; set; }

    [JsonPropertyName("items")]
    public List<JsonElement>? Items { get; set; }
}
