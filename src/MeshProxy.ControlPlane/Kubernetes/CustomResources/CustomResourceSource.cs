using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;
using MeshProxy.Config.Resources;
using MeshProxy.Config.Schema;
using MeshProxy.ControlPlane.Kubernetes.GatewayApi;
using MeshProxy.ControlPlane.Kubernetes.Informers;
using MeshProxy.ControlPlane.Resources;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Kubernetes.CustomResources;

/// <summary>One watched custom kind: where it is served and what it is called there.</summary>
internal sealed record CustomKind(string Group, string Version, string Plural)
{
    public string ApiVersion => $"{Group}/{Version}";
}

/// <summary>
/// What the custom kinds hold at one moment: the resources to serve (<see cref="Generated"/> the part made from the
/// Gateway API routes, the rest read from objects), each object's reading, each route's status.
/// </summary>
internal sealed record CustomResourceSnapshot(
    IReadOnlyList<StoredResource> Resources,
    IReadOnlyList<StoredResource> Generated,
    IReadOnlyList<(CustomObject Object, CustomKind Kind, CustomResourceRead Read)> Objects,
    IReadOnlyList<(CustomObject Route, CustomKind Kind, RouteStatus Status)> Routes);

/// <summary>
/// Watches the custom kinds the mesh reads from the API: every meshproxy.io kind, Istio's security.istio.io/v1
/// AuthorizationPolicy, PeerAuthentication and RequestAuthentication, and the Gateway API's HTTPRoute and GRPCRoute, each through an <see cref="Informer{T}"/>.
/// A kind whose CRD is not installed answers 404 to its list: its informer logs it and tries again with backoff, so
/// installing the CRD later is picked up, and the other kinds are not held up meanwhile.
/// <para>
/// RBAC (docker/kubernetes/rbac.yaml, the rules marked as this source's): get/list/watch on these resources and
/// get and patch on their /status. Discovery's own rules (core and discovery.k8s.io) are the Kubernetes source's.
/// </para>
/// </summary>
internal sealed class CustomResourceSource
{
    public static readonly IReadOnlyList<CustomKind> MeshKinds =
        [.. ResourceSchemas.All.Select(k => new CustomKind(ResourceSchemas.Group, ResourceSchemas.Version, k.Plural))];

    /// <summary>Istio's policies, read with Istio's semantics so that a team leaving Istio keeps them (CustomResourceReader).</summary>
    public static readonly IReadOnlyList<CustomKind> IstioSecurityKinds =
    [
        new("security.istio.io", "v1", "authorizationpolicies"),
        new("security.istio.io", "v1", "peerauthentications"),
        new("security.istio.io", "v1", "requestauthentications"),
    ];

    public static readonly CustomKind HttpRoutes = new("gateway.networking.k8s.io", "v1", "httproutes");
    public static readonly CustomKind GrpcRoutes = new("gateway.networking.k8s.io", "v1", "grpcroutes");

    private readonly List<(CustomKind Kind, Informer<CustomObject> Informer)> _informers = [];

    public CustomResourceSource(IKubernetes client, InformerOptions options, TimeProvider time, ILogger logger)
    {
        foreach (var kind in MeshKinds.Concat(IstioSecurityKinds).Append(HttpRoutes).Append(GrpcRoutes))
        {
            var informer = new Informer<CustomObject>(client, KubernetesResource<CustomObject>.Custom(kind.Group, kind.Version, kind.Plural), options, time, logger);
            informer.Changed += () => Changed?.Invoke();
            _informers.Add((kind, informer));
        }
    }

    /// <summary>Raised after any informer's cache changed.</summary>
    public event Action? Changed;

    public IEnumerable<IInformer> Informers => _informers.Select(i => i.Informer);

    public Task RunAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(_informers.Select(i => i.Informer.RunAsync(cancellationToken)));

    /// <summary>
    /// Reads every object of every kind. Routes are resolved against the Services of the whole served set, in its
    /// precedence: <paramref name="preferred"/> (the directory's), then the meshproxy.io ones, then
    /// <paramref name="fallback"/> (discovered from core Services), the first of a name winning. Objects in key
    /// order, so the same cluster gives the same snapshot.
    /// </summary>
    public CustomResourceSnapshot Read(IEnumerable<ServiceResource> preferred, IEnumerable<ServiceResource> fallback)
    {
        var resources = new List<StoredResource>();
        var objects = new List<(CustomObject, CustomKind, CustomResourceRead)>();
        var routes = new List<(CustomObject Route, CustomKind Kind)>();
        foreach (var (kind, informer) in _informers)
        {
            foreach (var (_, obj) in informer.Current.Items.OrderBy(i => i.Key, StringComparer.Ordinal))
            {
                if (kind == HttpRoutes || kind == GrpcRoutes)
                {
                    routes.Add((obj, kind));
                    continue;
                }

                var read = CustomResourceReader.Read(obj);
                objects.Add((obj, kind, read));
                if (read.Resource is { } resource)
                {
                    resources.Add(resource);
                }
            }
        }

        var all = preferred.Concat(resources.Select(r => r.Resource).OfType<ServiceResource>()).Concat(fallback);
        var gamma = GammaTranslator.Translate(routes.Select(r => r.Route), all);
        resources.AddRange(gamma.Resources);
        var statuses = routes.Zip(routes.Select(r => gamma.Statuses.First(s => s.Kind == r.Route.Kind && s.Namespace == r.Route.Namespace && s.Name == r.Route.Name)))
            .Select(p => (p.First.Route, p.First.Kind, p.Second))
            .ToList();
        return new CustomResourceSnapshot(resources, gamma.Resources, objects, statuses);
    }
}

/// <summary>
/// Writes what <see cref="ResourceStatus"/> and <see cref="GammaTranslator"/> computed onto the objects' status
/// subresource (a JSON merge patch), only when it differs from what the object holds, so that a steady cluster costs
/// no writes. On a route it replaces only the parents entries of this controller and keeps every other controller's.
/// <para>
/// With several control-plane replicas each counts the sidecars connected to it and writes its own entry under
/// <c>status.sidecars.replicas</c> with the sum beside it (<see cref="ResourceStatus.Sidecars"/>). A sum is only
/// right over the entries it was computed from, so each object's patch carries the resourceVersion it was computed
/// against: when another replica wrote in between, the API server answers 409 Conflict and the object is read again
/// and the status computed anew (as client-go's RetryOnConflict does). The writes converge: a replica whose own entry
/// and sum already stand writes nothing. One pass at a time (the <see cref="StatusPublisher"/>'s loop).
/// </para>
/// </summary>
internal sealed class StatusWriter(IKubernetes client, TimeProvider time, ILogger logger, ReplicaView? replicas = null)
{
    // A conflict means another replica wrote since our read: a handful of re-reads settles it (each is one GET).
    private const int ConflictAttempts = 5;

    private readonly ReplicaView _replicas = replicas ?? ReplicaView.Alone;

    /// <summary>Patches every status that differs from what the object holds. Returns how many writes failed (logged; the caller retries).</summary>
    public async Task<int> WriteAsync(CustomResourceSnapshot snapshot, ConfigState state, IReadOnlyDictionary<string, SidecarCounts> counts, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var heldBack = state.HeldBack.ToDictionary(h => h.Key, StringComparer.Ordinal);
        var keptLastGood = state.KeptLastGood.ToHashSet(StringComparer.Ordinal);
        var failed = 0;
        foreach (var (obj, kind, read) in snapshot.Objects)
        {
            JsonObject StatusOf(CustomObject current) => ResourceStatus.Build(
                current.Generation, read.Errors, heldBack.GetValueOrDefault(read.Key), counts.GetValueOrDefault(read.Key) ?? SidecarCounts.None, current.Status, now,
                lastGoodServes: keptLastGood.Contains(read.Key), replicas: _replicas);
            failed += await PatchAsync(obj, kind, StatusOf, cancellationToken).ConfigureAwait(false) ? 0 : 1;
        }

        foreach (var (route, kind, routeStatus) in snapshot.Routes)
        {
            failed += await PatchAsync(route, kind, current => RouteStatusJson(current, routeStatus, now), cancellationToken).ConfigureAwait(false) ? 0 : 1;
        }

        return failed;
    }

    private static JsonObject RouteStatusJson(CustomObject route, RouteStatus status, DateTimeOffset now)
    {
        var parents = new JsonArray();
        var previous = new List<JsonElement>();
        if (route.Status.ValueKind == JsonValueKind.Object && route.Status.TryGetProperty("parents", out var old) && old.ValueKind == JsonValueKind.Array)
        {
            foreach (var p in old.EnumerateArray())
            {
                var mine = p.TryGetProperty("controllerName", out var c) && c.GetString() == GammaTranslator.ControllerName;
                if (mine)
                {
                    previous.Add(p);
                }
                else
                {
                    parents.Add(JsonNode.Parse(p.GetRawText())); // another controller's entry is its own to write
                }
            }
        }

        foreach (var parent in status.Parents)
        {
            var before = previous.FirstOrDefault(p => p.TryGetProperty("parentRef", out var r) && JsonElement.DeepEquals(r, parent.ParentRef));
            var conditions = new JsonArray();
            foreach (var condition in parent.Conditions)
            {
                var statusText = condition.Status ? "True" : "False";
                var since = now;
                if (before.ValueKind == JsonValueKind.Object && before.TryGetProperty("conditions", out var oldConditions) && oldConditions.ValueKind == JsonValueKind.Array)
                {
                    foreach (var o in oldConditions.EnumerateArray())
                    {
                        if (o.TryGetProperty("type", out var t) && t.GetString() == condition.Type && o.TryGetProperty("status", out var s) && s.GetString() == statusText
                            && o.TryGetProperty("lastTransitionTime", out var lt) && lt.TryGetDateTimeOffset(out var at))
                        {
                            since = at;
                        }
                    }
                }

                conditions.Add(new JsonObject
                {
                    ["type"] = condition.Type,
                    ["status"] = statusText,
                    ["reason"] = condition.Reason,
                    ["message"] = condition.Message,
                    ["observedGeneration"] = status.Generation,
                    ["lastTransitionTime"] = since.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
                });
            }

            parents.Add(new JsonObject
            {
                ["parentRef"] = JsonNode.Parse(parent.ParentRef.GetRawText()),
                ["controllerName"] = GammaTranslator.ControllerName,
                ["conditions"] = conditions,
            });
        }

        return new JsonObject { ["parents"] = parents };
    }

    /// <summary>
    /// Writes <paramref name="statusOf"/> the object as it stands, guarded by its resourceVersion; on a conflict reads
    /// the object again and recomputes. False when the write failed.
    /// </summary>
    private async Task<bool> PatchAsync(CustomObject obj, CustomKind kind, Func<CustomObject, JsonObject> statusOf, CancellationToken cancellationToken)
    {
        var current = obj;
        try
        {
            for (var attempt = 1; ; attempt++)
            {
                var status = statusOf(current);
                if (current.Status.ValueKind == JsonValueKind.Object && JsonElement.DeepEquals(current.Status, JsonSerializer.SerializeToElement(status)))
                {
                    return true; // unchanged: no write
                }

                var patch = new JsonObject
                {
                    ["metadata"] = new JsonObject { ["resourceVersion"] = current.Metadata.ResourceVersion },
                    ["status"] = WithRemovals(status, current.Status),
                };
                try
                {
                    await client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(
                        new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), kind.Group, kind.Version, obj.Namespace, kind.Plural, obj.Name,
                        cancellationToken: cancellationToken).ConfigureAwait(false);
                    return true;
                }
                catch (HttpOperationException ex) when (ex.Response.StatusCode == System.Net.HttpStatusCode.Conflict && attempt < ConflictAttempts)
                {
                    // Another replica wrote since our read: compute again from what the object holds now.
                    var fresh = await client.CustomObjects.GetNamespacedCustomObjectStatusAsync(kind.Group, kind.Version, obj.Namespace, kind.Plural, obj.Name, cancellationToken).ConfigureAwait(false);
                    current = KubernetesJson.Deserialize<CustomObject>(JsonSerializer.Serialize(fresh));
                }
            }
        }
        catch (Exception ex) when (ex is HttpOperationException or HttpRequestException or IOException or JsonException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            // The object may be gone or the API away (a client timeout is a cancellation that is not ours): retried later.
            logger.StatusWriteFailed($"{kind.Plural}.{kind.Group}", obj.Namespace, obj.Name, ex.Message);
            return false;
        }
    }

    /// <summary>
    /// A merge patch merges maps key by key: a replica entry that <paramref name="status"/> no longer holds (a replica
    /// gone, or this one with no sidecars left for the object) is removed only by naming it with null.
    /// </summary>
    private static JsonObject WithRemovals(JsonObject status, JsonElement previous)
    {
        if (status["sidecars"]?["replicas"] is JsonObject entries
            && previous.ValueKind == JsonValueKind.Object && previous.TryGetProperty("sidecars", out var sidecars) && sidecars.ValueKind == JsonValueKind.Object
            && sidecars.TryGetProperty("replicas", out var old) && old.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in old.EnumerateObject().Where(e => !entries.ContainsKey(e.Name)))
            {
                entries[entry.Name] = null;
            }
        }

        return status;
    }
}
