using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// TEST INFRASTRUCTURE: a fake Kubernetes API server (there is none on these machines). In-process
/// Kestrel over real HTTP, serving objects as real Kubernetes JSON, with the list and watch semantics
/// the API documents ("Efficient detection of changes", "Retrieving large results sets in chunks"):
/// <list type="bullet">
/// <item>one resourceVersion counter for the whole store (etcd's revision); every write gets the next one;</item>
/// <item>list: a consistent snapshot, <c>limit</c>/<c>continue</c> pages all at the first page's
/// revision, <c>metadata.resourceVersion</c> of the list; an expired continue token is 410 Expired;
/// <c>resourceVersionMatch=Exact</c> serves the store as it was at that revision;</item>
/// <item>watch (<c>?watch=1</c>): one JSON event per line from the given resourceVersion (exclusive);
/// unset or "0": synthetic ADDED events for what exists, then changes; BOOKMARK events (only the
/// resourceVersion) when <c>allowWatchBookmarks=true</c>; ends after <c>timeoutSeconds</c>; a
/// resourceVersion older than the last compaction gets an ERROR event carrying a Status with code
/// 410 (reason Expired) and the stream ends, as the API server answers after etcd compacted.</item>
/// </list>
/// TokenReview (authentication.k8s.io/v1) for the service-account tokens it mints: FakeKubernetesApiServer.TokenReview.cs;
/// SelfSubjectAccessReview, /version and the Service and Pod proxies: the .SelfSubjectAccessReview, .Version and .Proxy files;
/// ConfigMaps and the checks the API server makes on them: FakeKubernetesApiServer.ConfigMaps.cs.
/// Secrets and Leases with their kinds' own checks: FakeKubernetesApiServer.Secrets.cs.
/// Types: core v1 namespaces, services, pods; discovery.k8s.io/v1 endpointslices; any other
/// group/version/plural registered with <see cref="RegisterResource"/>. Writes over HTTP: POST, PUT,
/// DELETE, and PUT/PATCH (merge patch, a metadata.resourceVersion in it a precondition) of the status subresource. Test hooks: <see cref="Apply"/>,
/// <see cref="Delete"/>, <see cref="Compact"/>, <see cref="SendBookmarks"/>, <see cref="SetReachable"/>.
/// Not served: label/field selectors, server-side apply, strategic merge patch, RBAC, admission.
/// </summary>
internal sealed partial class FakeKubernetesApiServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ResourceType> _types = new(StringComparer.Ordinal);

    // Per object (type path + namespace + name), every version still kept: a tombstone (null) marks a delete.
    private readonly Dictionary<string, List<(long Revision, JsonObject? Object)>> _history = new(StringComparer.Ordinal);
    private readonly List<Watch> _watches = [];
    private long _revision = 100;
    private long _compacted;
    private volatile bool _reachable = true;
    private long _uid;

    // The last state of each deleted object, with the deletion's resourceVersion: what its DELETED event carries.
    private readonly Dictionary<(string Key, long Revision), JsonObject> _deleted = [];

    private FakeKubernetesApiServer(WebApplication app)
    {
        _app = app;
        RegisterResource("", "v1", "namespaces", "Namespace", namespaced: false);
        RegisterResource("", "v1", "services", "Service", namespaced: true);
        RegisterResource("", "v1", "pods", "Pod", namespaced: true);
        RegisterResource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced: true);
        RegisterConfigMaps();
        RegisterSecretsAndLeases();
    }

    public Uri BaseUri { get; private set; } = null!;

    /// <summary>Requests served, as "METHOD path?query", in order (to check how a client paged or watched).</summary>
    public List<string> Requests { get; } = [];

    /// <summary>Called before each request is served, with "METHOD path?query": lets a test act between two pages of a list.</summary>
    public Action<string>? BeforeRequest { get; set; }

    /// <summary>The store's current resourceVersion.</summary>
    public long ResourceVersion
    {
        get
        {
            lock (_lock)
            {
                return _revision;
            }
        }
    }

    /// <summary>Watches open right now (a client that reconnected shows up here again).</summary>
    public int OpenWatches
    {
        get
        {
            lock (_lock)
            {
                return _watches.Count;
            }
        }
    }

    public static async Task<FakeKubernetesApiServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var server = new FakeKubernetesApiServer(app);
        app.Run(server.HandleAsync);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        server.BaseUri = new Uri(address);
        return server;
    }

    /// <summary>Serves another kind (a CRD): /apis/{group}/{version}[/namespaces/{ns}]/{plural}.</summary>
    public void RegisterResource(string group, string version, string plural, string kind, bool namespaced)
    {
        var type = new ResourceType(group, version, plural, kind, namespaced);
        lock (_lock)
        {
            _types[type.Path] = type;
        }
    }

    /// <summary>
    /// Creates or replaces an object given as kubectl shows it (apiVersion, kind, metadata, spec...); the
    /// server sets uid, creationTimestamp, resourceVersion and generation. Returns the stored object.
    /// </summary>
    public JsonObject Apply(string json)
    {
        var obj = JsonNode.Parse(json)?.AsObject() ?? throw new ArgumentException("not a JSON object", nameof(json));
        lock (_lock)
        {
            var type = TypeOf(obj);
            var (ns, name) = NameOf(obj, type);
            var current = CurrentLocked(Key(type, ns, name));
            return current is null ? CreateLocked(type, obj) : ReplaceLocked(type, current, obj, statusOnly: false);
        }
    }

    /// <summary>Stores raw text as one object's JSON: how a malformed object (one the schema would not stop) reaches a client.</summary>
    public void ApplyRaw(string apiVersion, string kind, string ns, string name, Func<JsonObject, JsonObject> edit)
    {
        lock (_lock)
        {
            var type = _types.Values.Single(t => t.ApiVersion == apiVersion && t.Kind == kind);
            var key = Key(type, ns, name);
            var current = CurrentLocked(key) ?? throw new InvalidOperationException($"{key} does not exist");
            var edited = edit(current.DeepClone().AsObject());
            edited["metadata"]!["resourceVersion"] = (++_revision).ToString(System.Globalization.CultureInfo.InvariantCulture);
            RecordLocked(key, edited);
        }
    }

    public bool Delete(string apiVersion, string kind, string ns, string name)
    {
        lock (_lock)
        {
            var type = _types.Values.Single(t => t.ApiVersion == apiVersion && t.Kind == kind);
            return DeleteLocked(type, ns, name) is not null;
        }
    }

    public JsonObject? Get(string apiVersion, string kind, string ns, string name)
    {
        lock (_lock)
        {
            var type = _types.Values.Single(t => t.ApiVersion == apiVersion && t.Kind == kind);
            return CurrentLocked(Key(type, ns, name))?.DeepClone().AsObject();
        }
    }

    /// <summary>
    /// Compacts history at the current revision, as etcd does: older resourceVersions can no longer be
    /// watched from (410) nor listed exactly, and continue tokens from before expire. With
    /// <paramref name="expireOpenWatches"/>, every open watch also gets an ERROR 410 and ends (as after an
    /// API server restart, whose new watch cache does not reach back to where those watches were).
    /// </summary>
    public void Compact(bool expireOpenWatches = false)
    {
        lock (_lock)
        {
            _compacted = _revision;
            foreach (var versions in _history.Values)
            {
                var keep = versions.FindLastIndex(v => v.Revision <= _compacted);
                if (keep > 0)
                {
                    versions.RemoveRange(0, keep);
                }
            }

            foreach (var key in _history.Where(h => h.Value is [(_, null)]).Select(h => h.Key).ToList())
            {
                _history.Remove(key);
            }

            if (expireOpenWatches)
            {
                foreach (var watch in _watches)
                {
                    watch.Events.Writer.TryWrite(Expired(watch.From));
                    watch.Events.Writer.TryComplete();
                }
            }
        }
    }

    /// <summary>Sends a BOOKMARK at the current resourceVersion on every open watch that asked for bookmarks.</summary>
    public void SendBookmarks()
    {
        lock (_lock)
        {
            foreach (var watch in _watches.Where(w => w.Bookmarks))
            {
                var bookmark = new JsonObject
                {
                    ["kind"] = watch.Type.Kind,
                    ["apiVersion"] = watch.Type.ApiVersion,
                    ["metadata"] = new JsonObject { ["resourceVersion"] = Rv(_revision) },
                };
                watch.Events.Writer.TryWrite(Event("BOOKMARK", bookmark));
            }
        }
    }

    /// <summary>
    /// Unreachable: every open connection is cut and every new request is reset before an answer
    /// (what a client sees when the API server's node goes away or a network policy drops it). Back: served again.
    /// </summary>
    public void SetReachable(bool reachable)
    {
        _reachable = reachable;
        if (!reachable)
        {
            lock (_lock)
            {
                foreach (var watch in _watches)
                {
                    watch.Abort();
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        SetReachable(false);
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var line = $"{request.Method} {request.Path}{request.QueryString}";
        lock (_lock)
        {
            Requests.Add(line);
        }

        BeforeRequest?.Invoke(line);

        if (!_reachable)
        {
            context.Abort();
            return;
        }

        if (await TryServeTokenReviewAsync(context))
        {
            return;
        }

        // meshproxy check's calls: FakeKubernetesApiServer.SelfSubjectAccessReview.cs, .Version.cs, .Proxy.cs; ConfigMap write checks: .ConfigMaps.cs.
        if (await TryServeSelfSubjectAccessReviewAsync(context) || await TryServeVersionAsync(context) || await TryServeProxyAsync(context)
            || await TryRefuseConfigMapWriteAsync(context))
        {
            return;
        }

        if (!TryRoute(request.Path.Value ?? "/", out var type, out var ns, out var name, out var status))
        {
            await StatusAsync(context, 404, "NotFound", $"the server could not find the requested resource ({request.Path})");
            return;
        }

        try
        {
            switch (request.Method)
            {
                case "GET" when name is null && IsTrue(request.Query["watch"]):
                    await WatchAsync(context, type, ns);
                    break;
                case "GET" when name is null:
                    await ListAsync(context, type, ns);
                    break;
                case "GET":
                    await GetAsync(context, type, ns, name);
                    break;
                case "POST" when name is null:
                    await WriteAsync(context, type, ns, null, status: false);
                    break;
                case "PUT" when name is not null:
                    await WriteAsync(context, type, ns, name, status);
                    break;
                case "PATCH" when name is not null:
                    await PatchAsync(context, type, ns, name, status);
                    break;
                case "DELETE" when name is not null:
                    await DeleteAsync(context, type, ns!, name);
                    break;
                default:
                    await StatusAsync(context, 405, "MethodNotAllowed", $"{request.Method} is not supported here");
                    break;
            }
        }
        catch (JsonException ex)
        {
            await StatusAsync(context, 400, "BadRequest", $"the body is not valid JSON: {ex.Message}");
        }
        catch (ApiError error)
        {
            await StatusAsync(context, error.Code, error.Reason, error.Message);
        }
    }

    private bool TryRoute(string path, out ResourceType type, out string? ns, out string? name, out bool status)
    {
        type = null!;
        ns = name = null;
        status = false;
        var parts = path.Trim('/').Split('/');
        string prefix;
        int rest;
        if (parts is ["api", var v, ..])
        {
            prefix = $"/api/{v}";
            rest = 2;
        }
        else if (parts is ["apis", var g, var v2, ..])
        {
            prefix = $"/apis/{g}/{v2}";
            rest = 3;
        }
        else
        {
            return false;
        }

        var tail = parts[rest..];
        ResourceType? found;
        lock (_lock)
        {
            // namespaces/{ns}/{plural}[/{name}[/status]] for namespaced kinds; {plural}[/{name}[/status]] otherwise
            // (namespaces/{name} is the Namespace itself).
            if (tail is ["namespaces", var n, var plural, ..] && _types.TryGetValue($"{prefix}/{plural}", out found) && found.Namespaced)
            {
                ns = n;
                tail = tail[2..];
            }
            else if (tail is [var plural2, ..] && _types.TryGetValue($"{prefix}/{plural2}", out found))
            {
            }
            else
            {
                return false;
            }
        }

        type = found;
        switch (tail)
        {
            case [_]:
                return true;
            case [_, var n1]:
                name = n1;
                return !type.Namespaced || ns is not null;
            case [_, var n2, "status"]:
                name = n2;
                status = true;
                return !type.Namespaced || ns is not null;
            default:
                return false;
        }
    }

    private async Task ListAsync(HttpContext context, ResourceType type, string? ns)
    {
        var query = context.Request.Query;
        var limit = int.TryParse(query["limit"], out var l) && l > 0 ? l : int.MaxValue;
        JsonObject list;
        lock (_lock)
        {
            long at;
            string? after = null;
            if (!string.IsNullOrEmpty(query["continue"]))
            {
                if (!TryReadContinue(query["continue"]!, out at, out after))
                {
                    throw new ApiError(400, "BadRequest", "continue key is not valid");
                }

                if (at < _compacted)
                {
                    // The API server's words for an expired continue token (its etcd revision was compacted).
                    throw new ApiError(410, "Expired",
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.");
                }
            }
            else if (query["resourceVersionMatch"] == "Exact" && long.TryParse(query["resourceVersion"], out var exact))
            {
                if (exact < _compacted)
                {
                    throw new ApiError(410, "Expired", $"too old resource version: {exact} ({_compacted})");
                }

                at = exact;
            }
            else
            {
                // Unset: most recent; "0" or NotOlderThan: any version at least as new, which the most recent is.
                at = _revision;
            }

            var items = StateAtLocked(type, ns, at)
                .Where(o => after is null || string.CompareOrdinal(SortKey(o), after) > 0)
                .ToList();
            var page = items.Take(limit).ToList();
            var metadata = new JsonObject { ["resourceVersion"] = Rv(at) };
            if (items.Count > page.Count)
            {
                metadata["continue"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(
                    new JsonObject { ["rv"] = at, ["start"] = SortKey(page[^1]) }.ToJsonString()));
                metadata["remainingItemCount"] = items.Count - page.Count;
            }

            list = new JsonObject
            {
                ["kind"] = type.Kind + "List",
                ["apiVersion"] = type.ApiVersion,
                ["metadata"] = metadata,
                // Built-in kinds' list items carry no kind/apiVersion over the wire (kubectl adds them back); custom resources' do.
                ["items"] = new JsonArray([.. page.Select(o => (JsonNode)ForList(type, o))]),
            };
        }

        await JsonAsync(context, 200, list);
    }

    private async Task GetAsync(HttpContext context, ResourceType type, string? ns, string name)
    {
        JsonObject? current;
        lock (_lock)
        {
            current = CurrentLocked(Key(type, ns, name))?.DeepClone().AsObject();
        }

        if (current is null)
        {
            await StatusAsync(context, 404, "NotFound", $"{type.Plural} \"{name}\" not found");
            return;
        }

        await JsonAsync(context, 200, current);
    }

    private async Task WatchAsync(HttpContext context, ResourceType type, string? ns)
    {
        var query = context.Request.Query;
        var from = query["resourceVersion"].ToString();
        var bookmarks = IsTrue(query["allowWatchBookmarks"]);
        var timeout = int.TryParse(query["timeoutSeconds"], out var t) && t > 0 ? TimeSpan.FromSeconds(t) : TimeSpan.FromMinutes(30);
        var watch = new Watch(type, ns, bookmarks, context);
        lock (_lock)
        {
            if (from is "" or "0")
            {
                // "Get state and start at most recent": synthetic ADDED for everything, then changes.
                foreach (var o in StateAtLocked(type, ns, _revision))
                {
                    watch.Events.Writer.TryWrite(Event("ADDED", o));
                }

                watch.From = _revision;
            }
            else if (!long.TryParse(from, out var rv))
            {
                throw new ApiError(400, "BadRequest", $"invalid resource version: {from}");
            }
            else if (rv < _compacted)
            {
                watch.Events.Writer.TryWrite(Expired(rv));
                watch.Events.Writer.TryComplete();
            }
            else
            {
                watch.From = rv;
                foreach (var (type2, obj) in EventsAfterLocked(type, ns, rv))
                {
                    watch.Events.Writer.TryWrite(Event(type2, obj));
                }
            }

            _watches.Add(watch);
        }

        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json";
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, watch.Aborted.Token);
        ended.CancelAfter(timeout);
        try
        {
            await context.Response.StartAsync(ended.Token);
            await foreach (var line in watch.Events.Reader.ReadAllAsync(ended.Token))
            {
                await context.Response.WriteAsync(line + "\n", ended.Token);
                await context.Response.Body.FlushAsync(ended.Token);
            }
        }
        catch (OperationCanceledException) when (watch.Aborted.IsCancellationRequested)
        {
            context.Abort();
        }
        catch (OperationCanceledException)
        {
            // timeoutSeconds reached or the client left: the response simply ends, as the API server's does.
        }
        finally
        {
            lock (_lock)
            {
                _watches.Remove(watch);
            }
        }
    }

    private async Task WriteAsync(HttpContext context, ResourceType type, string? ns, string? name, bool status)
    {
        var body = (await JsonNode.ParseAsync(context.Request.Body))?.AsObject();
        if (body is null)
        {
            await StatusAsync(context, 400, "BadRequest", "empty body");
            return;
        }

        JsonObject stored;
        lock (_lock)
        {
            body["apiVersion"] ??= type.ApiVersion;
            body["kind"] ??= type.Kind;
            if (body["metadata"] is not JsonObject metadata || metadata["name"]?.GetValue<string>() is not { Length: > 0 } bodyName)
            {
                throw new ApiError(422, "Invalid", "metadata.name: Required value");
            }

            if (ns is not null)
            {
                metadata["namespace"] = ns;
            }

            var key = Key(type, ns, bodyName);
            var current = CurrentLocked(key);
            ValidateSecretOrLease(type, current, body);
            if (name is null)
            {
                if (current is not null)
                {
                    throw new ApiError(409, "AlreadyExists", $"{type.Plural} \"{bodyName}\" already exists");
                }

                stored = CreateLocked(type, body);
            }
            else
            {
                if (current is null)
                {
                    throw new ApiError(404, "NotFound", $"{type.Plural} \"{name}\" not found");
                }

                if (metadata["resourceVersion"]?.GetValue<string>() is { } expected && expected != current["metadata"]!["resourceVersion"]!.GetValue<string>())
                {
                    throw new ApiError(409, "Conflict",
                        $"Operation cannot be fulfilled on {type.Plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again");
                }

                stored = ReplaceLocked(type, current, body, status);
            }
        }

        await JsonAsync(context, name is null ? 201 : 200, stored);
    }

    private async Task PatchAsync(HttpContext context, ResourceType type, string? ns, string name, bool status)
    {
        if (context.Request.ContentType?.StartsWith("application/merge-patch+json", StringComparison.Ordinal) != true)
        {
            await StatusAsync(context, 415, "UnsupportedMediaType", $"the fake API server takes only merge patches, not {context.Request.ContentType}");
            return;
        }

        var patch = (await JsonNode.ParseAsync(context.Request.Body))?.AsObject();
        JsonObject stored;
        lock (_lock)
        {
            var current = CurrentLocked(Key(type, ns, name));
            if (current is null || patch is null)
            {
                throw new ApiError(404, "NotFound", $"{type.Plural} \"{name}\" not found");
            }

            CheckPatchPrecondition(type, current, patch, name); // FakeKubernetesApiServer.Preconditions.cs
            var merged = current.DeepClone().AsObject();
            MergePatch(merged, patch);
            stored = ReplaceLocked(type, current, merged, status);
        }

        await JsonAsync(context, 200, stored);
    }

    private async Task DeleteAsync(HttpContext context, ResourceType type, string ns, string name)
    {
        JsonObject? deleted;
        lock (_lock)
        {
            deleted = DeleteLocked(type, ns, name);
        }

        if (deleted is null)
        {
            await StatusAsync(context, 404, "NotFound", $"{type.Plural} \"{name}\" not found");
            return;
        }

        await JsonAsync(context, 200, deleted);
    }

    private JsonObject CreateLocked(ResourceType type, JsonObject obj)
    {
        var metadata = obj["metadata"]!.AsObject();
        metadata["uid"] = $"00000000-0000-4000-8000-{++_uid:D12}";
        metadata["creationTimestamp"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture);
        metadata["resourceVersion"] = Rv(++_revision);
        if (obj.ContainsKey("spec"))
        {
            metadata["generation"] = 1;
        }

        var (ns, name) = NameOf(obj, type);
        RecordLocked(Key(type, ns, name), obj);
        return obj.DeepClone().AsObject();
    }

    /// <summary>
    /// A replace of the main resource keeps the stored status; one of the status subresource changes only
    /// the status (the API server's split for kinds with a status subresource). Spec changes bump generation.
    /// </summary>
    private JsonObject ReplaceLocked(ResourceType type, JsonObject current, JsonObject incoming, bool statusOnly)
    {
        var next = statusOnly ? current.DeepClone().AsObject() : incoming.DeepClone().AsObject();
        if (statusOnly)
        {
            next["status"] = incoming["status"]?.DeepClone();
        }
        else if (current["status"] is { } status && type.Kind != "Namespace")
        {
            next["status"] = status.DeepClone();
        }

        var metadata = next["metadata"]!.AsObject();
        var old = current["metadata"]!.AsObject();
        metadata["uid"] = old["uid"]!.DeepClone();
        metadata["creationTimestamp"] = old["creationTimestamp"]!.DeepClone();
        metadata["resourceVersion"] = Rv(++_revision);
        var generation = old["generation"] is { } g ? long.Parse(g.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture) : 0;
        if (!statusOnly && !JsonNode.DeepEquals(current["spec"], next["spec"]))
        {
            generation++;
        }

        if (generation > 0)
        {
            metadata["generation"] = generation;
        }

        var (ns, name) = NameOf(next, type);
        RecordLocked(Key(type, ns, name), next);
        return next.DeepClone().AsObject();
    }

    private JsonObject? DeleteLocked(ResourceType type, string? ns, string name)
    {
        var key = Key(type, ns, name);
        var current = CurrentLocked(key);
        if (current is null)
        {
            return null;
        }

        _revision++;
        // The DELETED event carries the object's last state with the deletion's resourceVersion.
        var last = current.DeepClone().AsObject();
        last["metadata"]!["resourceVersion"] = Rv(_revision);
        _deleted[(key, _revision)] = last;
        RecordLocked(key, null);
        return last.DeepClone().AsObject();
    }

    private void RecordLocked(string key, JsonObject? obj)
    {
        if (!_history.TryGetValue(key, out var versions))
        {
            _history[key] = versions = [];
        }

        versions.Add((_revision, obj));
        var type = _types[key[..key.IndexOf('|', StringComparison.Ordinal)]];
        var ns = obj?["metadata"]?["namespace"]?.GetValue<string>();
        foreach (var watch in _watches.Where(w => w.Type == type))
        {
            if (obj is null)
            {
                continue; // DeleteLocked sends it, with the last state
            }

            if (watch.Namespace is null || watch.Namespace == ns)
            {
                SendLocked(watch, obj, Event(versions.Count > 1 && versions[^2].Object is not null ? "MODIFIED" : "ADDED", obj));
            }
        }

        if (obj is null && _deleted.TryGetValue((key, _revision), out var gone))
        {
            var goneNs = gone["metadata"]?["namespace"]?.GetValue<string>();
            foreach (var watch in _watches.Where(w => w.Type == type && (w.Namespace is null || w.Namespace == goneNs)))
            {
                watch.Events.Writer.TryWrite(Event("DELETED", gone));
            }
        }
    }

    private JsonObject? CurrentLocked(string key) =>
        _history.TryGetValue(key, out var versions) && versions.Count > 0 ? versions[^1].Object : null;

    /// <summary>Every object of a type as it was at a revision, in the API server's order (namespace, then name).</summary>
    private IEnumerable<JsonObject> StateAtLocked(ResourceType type, string? ns, long revision) =>
        _history
            .Where(h => h.Key.StartsWith(type.Path + "|", StringComparison.Ordinal))
            .Select(h => h.Value.LastOrDefault(v => v.Revision <= revision).Object)
            .OfType<JsonObject>()
            .Where(o => ns is null || o["metadata"]?["namespace"]?.GetValue<string>() == ns)
            .OrderBy(SortKey, StringComparer.Ordinal)
            .Select(o => o.DeepClone().AsObject());

    /// <summary>Changes after a revision, oldest first, as watch events.</summary>
    private IEnumerable<(string Type, JsonObject Object)> EventsAfterLocked(ResourceType type, string? ns, long revision)
    {
        var events = new List<(long Revision, string Type, JsonObject Object)>();
        foreach (var (key, versions) in _history.Where(h => h.Key.StartsWith(type.Path + "|", StringComparison.Ordinal)))
        {
            for (var i = 0; i < versions.Count; i++)
            {
                var (rv, obj) = versions[i];
                if (rv <= revision)
                {
                    continue;
                }

                var before = i > 0 ? versions[i - 1].Object : null;
                if (obj is null)
                {
                    if (_deleted.TryGetValue((key, rv), out var gone))
                    {
                        events.Add((rv, "DELETED", gone));
                    }
                }
                else
                {
                    events.Add((rv, before is null ? "ADDED" : "MODIFIED", obj));
                }
            }
        }

        return events
            .Where(e => ns is null || e.Object["metadata"]?["namespace"]?.GetValue<string>() == ns)
            .OrderBy(e => e.Revision)
            .Select(e => (e.Type, e.Object.DeepClone().AsObject()));
    }

    private ResourceType TypeOf(JsonObject obj)
    {
        var apiVersion = obj["apiVersion"]?.GetValue<string>() ?? throw new ArgumentException("apiVersion missing");
        var kind = obj["kind"]?.GetValue<string>() ?? throw new ArgumentException("kind missing");
        return _types.Values.SingleOrDefault(t => t.ApiVersion == apiVersion && t.Kind == kind)
            ?? throw new ArgumentException($"{apiVersion} {kind} is not registered with the fake API server");
    }

    private static (string? Namespace, string Name) NameOf(JsonObject obj, ResourceType type)
    {
        var metadata = obj["metadata"] as JsonObject ?? throw new ArgumentException("metadata missing");
        var name = metadata["name"]?.GetValue<string>() ?? throw new ArgumentException("metadata.name missing");
        if (!type.Namespaced)
        {
            return (null, name);
        }

        var ns = metadata["namespace"]?.GetValue<string>();
        if (ns is null)
        {
            metadata["namespace"] = ns = "default";
        }

        return (ns, name);
    }

    private static string Key(ResourceType type, string? ns, string name) => $"{type.Path}|{ns}/{name}";

    private static string SortKey(JsonObject o) =>
        $"{o["metadata"]?["namespace"]?.GetValue<string>()}/{o["metadata"]?["name"]?.GetValue<string>()}";

    private static JsonObject ForList(ResourceType type, JsonObject o)
    {
        if (type.Group.Length == 0 || type.Group.EndsWith(".k8s.io", StringComparison.Ordinal))
        {
            o.Remove("kind");
            o.Remove("apiVersion");
        }

        return o;
    }

    private static string Event(string type, JsonObject obj) =>
        new JsonObject { ["type"] = type, ["object"] = obj.DeepClone() }.ToJsonString();

    private static string Expired(long rv) =>
        Event("ERROR", StatusObject(410, "Expired", $"too old resource version: {rv}"));

    private static JsonObject StatusObject(int code, string reason, string message) => new()
    {
        ["kind"] = "Status",
        ["apiVersion"] = "v1",
        ["metadata"] = new JsonObject(),
        ["status"] = "Failure",
        ["message"] = message,
        ["reason"] = reason,
        ["code"] = code,
    };

    private static bool TryReadContinue(string token, out long revision, out string? after)
    {
        revision = 0;
        after = null;
        try
        {
            var json = JsonNode.Parse(Convert.FromBase64String(token))!.AsObject();
            revision = json["rv"]!.GetValue<long>();
            after = json["start"]!.GetValue<string>();
            return true;
        }
        catch (Exception ex) when (ex is FormatException or JsonException or InvalidOperationException or NullReferenceException)
        {
            return false;
        }
    }

    private static void MergePatch(JsonObject target, JsonObject patch)
    {
        foreach (var (key, value) in patch)
        {
            if (value is null)
            {
                target.Remove(key);
            }
            else if (value is JsonObject child && target[key] is JsonObject existing)
            {
                MergePatch(existing, child);
            }
            else
            {
                target[key] = value.DeepClone();
            }
        }
    }

    private static bool IsTrue(Microsoft.Extensions.Primitives.StringValues value) => value == "1" || value == "true";

    private static string Rv(long revision) => revision.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static Task StatusAsync(HttpContext context, int code, string reason, string message) =>
        JsonAsync(context, code, StatusObject(code, reason, message));

    private static Task JsonAsync(HttpContext context, int code, JsonObject body)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(body.ToJsonString());
    }

    /// <summary>An answer decided under the store's lock, written as a Status object after it.</summary>
    private sealed class ApiError(int code, string reason, string message) : Exception(message)
    {
        public int Code { get; } = code;

        public string Reason { get; } = reason;
    }

    private sealed record ResourceType(string Group, string Version, string Plural, string Kind, bool Namespaced)
    {
        public string ApiVersion => Group.Length == 0 ? Version : $"{Group}/{Version}";

        public string Path => Group.Length == 0 ? $"/api/{Version}/{Plural}" : $"/apis/{Group}/{Version}/{Plural}";
    }

    /// <summary>One open watch: its events, queued under the store's lock in revision order and written by its request.</summary>
    private sealed class Watch(ResourceType type, string? ns, bool bookmarks, HttpContext context)
    {
        public ResourceType Type { get; } = type;

        public string? Namespace { get; } = ns;

        public bool Bookmarks { get; } = bookmarks;

        public long From { get; set; }

        public Channel<string> Events { get; } = Channel.CreateUnbounded<string>();

        public CancellationTokenSource Aborted { get; } = new();

        public void Abort()
        {
            Aborted.Cancel();
            context.Abort();
        }
    }
}
