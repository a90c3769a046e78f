using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.ControlPlane.Kubernetes.CustomResources;
using MeshProxy.ControlPlane.Resources;

namespace MeshProxy.ControlPlane.Kubernetes.GatewayApi;

/// <summary>One condition of a route's status for one parent, as the Gateway API defines it.</summary>
internal sealed record RouteCondition(string Type, bool Status, string Reason, string Message);

/// <summary>A route's status for one of its Service parents; <see cref="ParentRef"/> is the parentRef as written in the spec.</summary>
internal sealed record RouteParentStatus(JsonElement ParentRef, IReadOnlyList<RouteCondition> Conditions);

/// <summary>What the control plane writes into one route's status.parents (only the parents that are Services: the mesh's).</summary>
internal sealed record RouteStatus(string Kind, string Namespace, string Name, long Generation, IReadOnlyList<RouteParentStatus> Parents);

internal sealed record GammaResult(IReadOnlyList<StoredResource> Resources, IReadOnlyList<RouteStatus> Statuses);

/// <summary>
/// Gateway API for the mesh (GAMMA): HTTPRoutes and GRPCRoutes (gateway.networking.k8s.io/v1) whose parentRefs are
/// Services become MeshProxy HttpRoutes, one per parent Service, with the rules of every route attached to it
/// ordered by the Gateway API's precedence (exact path, then the longest prefix, then method, then the most header
/// matches, then the most query parameter matches; ties to the oldest route, then namespace/name). Each (rule, match)
/// becomes one rule of ours, so the first-match order of our model gives the Gateway API's most-specific-match semantics.
/// Filters map onto the route model: RequestHeaderModifier/ResponseHeaderModifier to headers.request/response,
/// URLRewrite to rewrite, RequestRedirect to redirect (the rule then forwards nowhere), PathPrefix matches to
/// uri.pathPrefix so that ReplacePrefixMatch replaces whole segments, RequestMirror (HTTPRoute and GRPCRoute) to mirror and
/// mirrorPercentage (one per rule; a mirror backendRef that does not resolve is dropped with ResolvedRefs False, the rule
/// still served).
/// <para>
/// Nothing is silently dropped: a field the route model cannot honour (ExtensionRef and other filter
/// types, per-backend filters, session persistence...) makes the route not Accepted with reason UnsupportedValue
/// naming it, and the route is not served; a backendRef that cannot be resolved sets ResolvedRefs False (InvalidKind, RefNotPermitted,
/// BackendNotFound) and its rule is not served (the Gateway API asks for a 500 there, which the route model has
/// no way to say yet). The generated document goes through the same parser as every resource.
/// </para>
/// </summary>
internal static partial class GammaTranslator
{
    public const string ControllerName = "meshproxy.io/controlplane";
    public const string HttpRouteKind = "HTTPRoute";
    public const string GrpcRouteKind = "GRPCRoute";

    /// <summary>The served HttpRoute for a parent Service is named after it plus this.</summary>
    public const string GeneratedSuffix = ".gateway-api";

    private static readonly string[] RuleFields = ["name", "matches", "backendRefs", "filters", "timeouts"];

    public static GammaResult Translate(IEnumerable<CustomObject> routes, IEnumerable<ServiceResource> services)
    {
        var byName = new Dictionary<string, ServiceResource>(StringComparer.Ordinal);
        foreach (var s in services)
        {
            byName.TryAdd($"{s.Metadata.Namespace}/{s.Metadata.Name}", s);
        }

        var statuses = new List<RouteStatus>();
        var attached = new Dictionary<string, List<RuleEntry>>(StringComparer.Ordinal); // parent ns/name -> rules
        var ordered = routes
            .OrderBy(r => r.Metadata.CreationTimestamp ?? DateTime.MaxValue)
            .ThenBy(r => $"{r.Namespace}/{r.Name}", StringComparer.Ordinal)
            .ToList();
        for (var order = 0; order < ordered.Count; order++)
        {
            statuses.Add(TranslateRoute(ordered[order], order, byName, attached));
        }

        var resources = new List<StoredResource>();
        foreach (var (parent, entries) in attached.OrderBy(a => a.Key, StringComparer.Ordinal))
        {
            var service = byName[parent];
            var rules = new JsonArray([.. entries.OrderBy(e => e, RuleEntry.Precedence).Select(e => e.Rule.DeepClone())]);
            var text = Document(service.Metadata.Namespace, service.Metadata.Name + GeneratedSuffix, HostOf(service), rules);
            var parsed = ResourceParser.ParseText(text, $"{HttpRouteResource.KindName}/{service.Metadata.Namespace}/{service.Metadata.Name}{GeneratedSuffix}");
            if (parsed.IsValid && parsed.Resources.Count == 1)
            {
                resources.Add(new StoredResource(parsed.Resources[0], text, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..12]));
            }
        }

        return new GammaResult(resources, statuses);
    }

    private static RouteStatus TranslateRoute(CustomObject route, int order, Dictionary<string, ServiceResource> services, Dictionary<string, List<RuleEntry>> attached)
    {
        var grpc = route.Kind == GrpcRouteKind;
        var unsupported = new List<string>();
        var unresolved = new List<(string Reason, string Message)>();
        var entries = new List<RuleEntry>();
        var spec = route.Spec.ValueKind == JsonValueKind.Object ? route.Spec : default;
        if (spec.ValueKind == JsonValueKind.Object && spec.TryGetProperty("rules", out var rulesElement) && rulesElement.ValueKind == JsonValueKind.Array)
        {
            var r = 0;
            foreach (var rule in rulesElement.EnumerateArray())
            {
                entries.AddRange(TranslateRule(route, grpc, rule, r, order, services, unsupported, unresolved));
                r++;
            }
        }

        // The route's own rules, alone, through the parser: what it refuses (a bad regex, a bad duration) is the route's fault.
        if (unsupported.Count == 0 && entries.Count > 0)
        {
            var alone = Document(route.Namespace, route.Name, "route", new JsonArray([.. entries.Select(e => e.Rule.DeepClone())]));
            foreach (var error in ResourceParser.ParseText(alone, $"{route.Kind}/{route.Namespace}/{route.Name}").Errors)
            {
                unsupported.Add($"{error.FieldPath}: {error.Reason}");
            }
        }

        var parents = new List<RouteParentStatus>();
        if (spec.ValueKind == JsonValueKind.Object && spec.TryGetProperty("parentRefs", out var parentRefs) && parentRefs.ValueKind == JsonValueKind.Array)
        {
            var servedParents = new HashSet<string>(StringComparer.Ordinal);
            foreach (var parentRef in parentRefs.EnumerateArray())
            {
                if (!IsServiceRef(parentRef, "gateway.networking.k8s.io", "Gateway"))
                {
                    continue; // a Gateway's route: another controller's business
                }

                var ns = Text(parentRef, "namespace") ?? route.Namespace;
                var name = Text(parentRef, "name") ?? string.Empty;
                var accepted = Accept(route, parentRef, ns, name, services, unsupported);
                if (accepted.Status && entries.Count > 0 && servedParents.Add($"{ns}/{name}"))
                {
                    if (!attached.TryGetValue($"{ns}/{name}", out var list))
                    {
                        attached[$"{ns}/{name}"] = list = [];
                    }

                    list.AddRange(entries);
                }

                var resolved = unresolved.Count == 0
                    ? new RouteCondition("ResolvedRefs", true, "ResolvedRefs", "every backendRef resolved")
                    : new RouteCondition("ResolvedRefs", false, unresolved[0].Reason, string.Join("; ", unresolved.Select(u => u.Message)));
                parents.Add(new RouteParentStatus(parentRef.Clone(), [accepted, resolved]));
            }
        }

        return new RouteStatus(route.Kind, route.Namespace, route.Name, route.Generation, parents);
    }

    private static RouteCondition Accept(CustomObject route, JsonElement parentRef, string ns, string name, Dictionary<string, ServiceResource> services, List<string> unsupported)
    {
        if (!services.TryGetValue($"{ns}/{name}", out var service))
        {
            return new RouteCondition("Accepted", false, "NoMatchingParent", $"no Service {ns}/{name} in the mesh");
        }

        if (ns != route.Namespace)
        {
            return new RouteCondition("Accepted", false, "UnsupportedValue",
                $"parentRef to Service {ns}/{name} from namespace {route.Namespace}: consumer routes (in the caller's namespace) are not supported; put the route in {ns}");
        }

        if (parentRef.TryGetProperty("port", out var portElement) && portElement.TryGetInt32(out var port))
        {
            if (!service.Spec.Ports.Any(p => p.Port == port))
            {
                return new RouteCondition("Accepted", false, "NoMatchingParent", $"Service {ns}/{name} has no port {port}");
            }

            if (service.Spec.Ports.Count > 1)
            {
                return new RouteCondition("Accepted", false, "UnsupportedValue", $"parentRef.port: a route applies to every port of Service {ns}/{name}; it cannot be narrowed to port {port}");
            }
        }

        if (parentRef.TryGetProperty("sectionName", out _))
        {
            return new RouteCondition("Accepted", false, "UnsupportedValue", "parentRef.sectionName is not supported for Service parents");
        }

        return unsupported.Count > 0
            ? new RouteCondition("Accepted", false, "UnsupportedValue", string.Join("; ", unsupported))
            : new RouteCondition("Accepted", true, "Accepted", "served by the mesh's sidecars");
    }

    private static List<RuleEntry> TranslateRule(
        CustomObject route, bool grpc, JsonElement rule, int r, int order, Dictionary<string, ServiceResource> services,
        List<string> unsupported, List<(string Reason, string Message)> unresolved)
    {
        var field = $"spec.rules[{r}]";
        var result = new List<RuleEntry>();
        foreach (var property in rule.EnumerateObject())
        {
            if (!RuleFields.Contains(property.Name) || (grpc && property.Name == "timeouts"))
            {
                unsupported.Add($"{field}.{property.Name}: not supported");
            }
        }

        var filters = Filters(route, rule, grpc, field, services, unsupported, unresolved);
        var redirect = filters.ContainsKey("redirect");

        // A redirect rule forwards nowhere: its backendRefs, if any, are still resolved for ResolvedRefs, never used.
        var destinations = redirect && !rule.TryGetProperty("backendRefs", out _) ? null : Backends(route, rule, field, services, unresolved);
        var timeout = new JsonObject();
        TimeSpan? requestTimeout = null, backendTimeout = null;
        if (!grpc && rule.TryGetProperty("timeouts", out var timeouts) && timeouts.ValueKind == JsonValueKind.Object)
        {
            foreach (var t in timeouts.EnumerateObject())
            {
                var text = t.Value.ValueKind == JsonValueKind.String ? t.Value.GetString()! : string.Empty;
                if (!Durations.TryParse(text, out var duration))
                {
                    unsupported.Add($"{field}.timeouts.{t.Name}: '{t.Value}' is not a duration");
                }
                else if (duration > TimeSpan.Zero) // 0s: no timeout
                {
                    switch (t.Name)
                    {
                        case "request":
                            timeout["timeout"] = text;
                            requestTimeout = duration;
                            break;
                        case "backendRequest":
                            // One attempt's timeout: without retries that is Istio's perTryTimeout with no retries.
                            timeout["retries"] = new JsonObject { ["attempts"] = 0, ["perTryTimeout"] = text };
                            backendTimeout = duration;
                            break;
                        default:
                            unsupported.Add($"{field}.timeouts.{t.Name}: not supported");
                            break;
                    }
                }
            }
        }

        if (backendTimeout > requestTimeout)
        {
            unsupported.Add($"{field}.timeouts.backendRequest: {backendTimeout} is longer than timeouts.request ({requestTimeout}); it must not be");
        }

        if (destinations is null && !redirect)
        {
            return result; // its backends are unresolved: ResolvedRefs says which, and the rule is not served
        }

        var matches = rule.TryGetProperty("matches", out var m) && m.ValueKind == JsonValueKind.Array && m.GetArrayLength() > 0
            ? m.EnumerateArray().ToList()
            : [default];
        for (var i = 0; i < matches.Count; i++)
        {
            var match = grpc ? GrpcMatch(matches[i], $"{field}.matches[{i}]", unsupported) : HttpMatch(matches[i], $"{field}.matches[{i}]", unsupported);
            var ours = new JsonObject { ["name"] = $"{route.Name}.{r}.{i}" };
            if (match.Json.Count > 0)
            {
                ours["match"] = new JsonArray(match.Json);
            }

            if (filters.ContainsKey("replacePrefixMatch") && match.Rank != 1)
            {
                // The Gateway API: ReplacePrefixMatch only with PathPrefix matches (no match is PathPrefix "/").
                unsupported.Add($"{field}.matches[{i}].path: ReplacePrefixMatch needs a PathPrefix match");
            }

            if (!redirect)
            {
                ours["route"] = destinations!.DeepClone();
            }

            foreach (var (k, v) in timeout)
            {
                ours[k] = v!.DeepClone();
            }

            foreach (var (k, v) in filters)
            {
                if (k != "replacePrefixMatch")
                {
                    ours[k] = v!.DeepClone();
                }
            }

            result.Add(new RuleEntry(ours, match.Rank, match.Length, match.HasMethod, match.Headers, match.QueryParams, order, r, i));
        }

        return result;
    }

    /// <summary>The rule's backendRefs as our weighted destinations (weights as percentages adding up to 100), or null when any cannot be used.</summary>
    private static JsonArray? Backends(CustomObject route, JsonElement rule, string field, Dictionary<string, ServiceResource> services, List<(string Reason, string Message)> unresolved)
    {
        if (!rule.TryGetProperty("backendRefs", out var refs) || refs.ValueKind != JsonValueKind.Array || refs.GetArrayLength() == 0)
        {
            unresolved.Add(("BackendNotFound", $"{field}.backendRefs: none; the rule is not served"));
            return null;
        }

        var found = new List<(string Host, int Port, long Weight)>();
        var ok = true;
        var b = 0;
        foreach (var backend in refs.EnumerateArray())
        {
            var at = $"{field}.backendRefs[{b++}]";
            if (backend.TryGetProperty("filters", out _))
            {
                unresolved.Add(("UnsupportedValue", $"{at}.filters: not supported"));
                ok = false;
                continue;
            }

            if (Resolve(route, backend, at, services, unresolved) is not { } resolved)
            {
                ok = false;
                continue;
            }

            var weight = backend.TryGetProperty("weight", out var w) && w.TryGetInt64(out var wv) ? wv : 1;
            found.Add((resolved.Host, resolved.Port, weight));
        }

        var total = found.Sum(f => f.Weight);
        if (!ok || found.Count == 0 || total <= 0)
        {
            if (ok)
            {
                unresolved.Add(("UnsupportedValue", $"{field}.backendRefs: every weight is 0; the rule is not served"));
            }

            return null;
        }

        // Largest remainder: shares in whole percent that add up to exactly 100.
        var shares = found.Select(f => f.Weight * 100.0 / total).ToArray();
        var percents = shares.Select(s => (int)Math.Floor(s)).ToArray();
        foreach (var i in Enumerable.Range(0, shares.Length).OrderByDescending(i => shares[i] - percents[i]).ThenBy(i => i).Take(100 - percents.Sum()))
        {
            percents[i]++;
        }

        return new JsonArray([.. found.Select((f, i) => (JsonNode)new JsonObject
        {
            ["destination"] = new JsonObject { ["host"] = f.Host, ["port"] = new JsonObject { ["number"] = f.Port } },
            ["weight"] = percents[i],
        })]);
    }

    /// <summary>
    /// A backendRef (of a rule, or of a RequestMirror filter) as a Service host and port, or null with the reason in
    /// <paramref name="unresolved"/>: not a Service (InvalidKind), in another namespace (RefNotPermitted), no such Service
    /// or port (BackendNotFound).
    /// </summary>
    private static (string Host, int Port)? Resolve(CustomObject route, JsonElement backend, string at, Dictionary<string, ServiceResource> services, List<(string Reason, string Message)> unresolved)
    {
        if (!IsServiceRef(backend, string.Empty, "Service"))
        {
            unresolved.Add(("InvalidKind", $"{at}: only Services (group \"\", kind Service) can be backends"));
            return null;
        }

        var ns = Text(backend, "namespace") ?? route.Namespace;
        var name = Text(backend, "name") ?? string.Empty;
        if (ns != route.Namespace)
        {
            unresolved.Add(("RefNotPermitted", $"{at}: Service {ns}/{name} is in another namespace (ReferenceGrant is not supported)"));
            return null;
        }

        if (!services.TryGetValue($"{ns}/{name}", out var service))
        {
            unresolved.Add(("BackendNotFound", $"{at}: no Service {ns}/{name}"));
            return null;
        }

        if (!backend.TryGetProperty("port", out var p) || !p.TryGetInt32(out var port) || !service.Spec.Ports.Any(sp => sp.Port == port))
        {
            unresolved.Add(("BackendNotFound", $"{at}: Service {ns}/{name} has no port {(p.ValueKind == JsonValueKind.Undefined ? "(port is required)" : p.ToString())}"));
            return null;
        }

        return (HostOf(service), port);
    }

    /// <summary>
    /// RequestMirror as our rule's mirror and mirrorPercentage: percent (whole percent) or fraction (numerator over
    /// denominator, 100 by default), neither meaning every request. A backendRef that does not resolve is dropped, as
    /// the Gateway API says (ResolvedRefs False with its reason), and the rule is still served, without the mirror.
    /// </summary>
    private static void Mirror(CustomObject route, JsonElement mirror, string field, Dictionary<string, ServiceResource> services, JsonObject result,
        List<string> unsupported, List<(string Reason, string Message)> unresolved)
    {
        double percentage = 100;
        var hasPercent = mirror.TryGetProperty("percent", out var percent);
        var hasFraction = mirror.TryGetProperty("fraction", out var fraction);
        if (hasPercent && hasFraction)
        {
            unsupported.Add($"{field}: set percent or fraction, not both");
            return;
        }

        if (hasPercent)
        {
            if (!percent.TryGetInt32(out var p) || p is < 0 or > 100)
            {
                unsupported.Add($"{field}.percent: '{percent}' is not a whole percent (0-100)");
                return;
            }

            percentage = p;
        }
        else if (hasFraction)
        {
            var numerator = fraction.ValueKind == JsonValueKind.Object && fraction.TryGetProperty("numerator", out var n) && n.TryGetInt32(out var nv) ? nv : -1;
            var denominator = fraction.ValueKind == JsonValueKind.Object && fraction.TryGetProperty("denominator", out var d) ? (d.TryGetInt32(out var dv) ? dv : 0) : 100;
            if (numerator < 0 || denominator <= 0 || numerator > denominator)
            {
                unsupported.Add($"{field}.fraction: '{fraction}' is not a fraction of requests (0 <= numerator <= denominator, denominator > 0)");
                return;
            }

            percentage = numerator * 100.0 / denominator;
        }

        if (!mirror.TryGetProperty("backendRef", out var backend) || backend.ValueKind != JsonValueKind.Object)
        {
            unresolved.Add(("BackendNotFound", $"{field}.backendRef: none; the rule is served without its mirror"));
            return;
        }

        if (Resolve(route, backend, $"{field}.backendRef", services, unresolved) is not { } resolved)
        {
            return;
        }

        result["mirror"] = new JsonObject { ["host"] = resolved.Host, ["port"] = new JsonObject { ["number"] = resolved.Port } };
        result["mirrorPercentage"] = new JsonObject { ["value"] = percentage };
    }

    private static MatchShape HttpMatch(JsonElement match, string field, List<string> unsupported)
    {
        var json = new JsonObject();
        var shape = new MatchShape(json, Rank: 1, Length: 1, HasMethod: false, Headers: 0, QueryParams: 0);
        if (match.ValueKind != JsonValueKind.Object)
        {
            return shape;
        }

        foreach (var property in match.EnumerateObject())
        {
            if (property.Name is not ("path" or "headers" or "method" or "queryParams"))
            {
                unsupported.Add($"{field}.{property.Name}: this match is not supported");
            }
        }

        if (match.TryGetProperty("path", out var path))
        {
            var value = Text(path, "value") ?? "/";
            switch (Text(path, "type") ?? "PathPrefix")
            {
                case "Exact":
                    json["uri"] = new JsonObject { ["exact"] = value };
                    shape = shape with { Rank = 0, Length = value.Length };
                    break;
                case "PathPrefix":
                    // Gateway API prefixes match whole path segments: /foo matches /foo and /foo/bar, not /foobar;
                    // the route model's pathPrefix says the same, and a prefix rewrite replaces exactly those segments.
                    json["uri"] = new JsonObject { ["pathPrefix"] = value };
                    shape = shape with { Rank = 1, Length = value.Length };
                    break;
                case "RegularExpression":
                    json["uri"] = new JsonObject { ["regex"] = value };
                    shape = shape with { Rank = 2, Length = value.Length };
                    break;
                case var other:
                    unsupported.Add($"{field}.path.type: '{other}' is not a path match type");
                    break;
            }
        }

        if (Text(match, "method") is { } method)
        {
            json["method"] = new JsonObject { ["exact"] = method };
            shape = shape with { HasMethod = true };
        }

        return shape with { Headers = Headers(match, json, field, unsupported), QueryParams = QueryParams(match, json, field, unsupported) };
    }

    private static MatchShape GrpcMatch(JsonElement match, string field, List<string> unsupported)
    {
        var json = new JsonObject();
        var shape = new MatchShape(json, Rank: 1, Length: 1, HasMethod: false, Headers: 0, QueryParams: 0);
        if (match.ValueKind != JsonValueKind.Object)
        {
            return shape;
        }

        foreach (var property in match.EnumerateObject())
        {
            if (property.Name is not ("method" or "headers"))
            {
                unsupported.Add($"{field}.{property.Name}: not supported");
            }
        }

        if (match.TryGetProperty("method", out var method))
        {
            var service = Text(method, "service");
            var name = Text(method, "method");
            var regex = (Text(method, "type") ?? "Exact") switch
            {
                "Exact" => (bool?)false,
                "RegularExpression" => true,
                var other => Unsupported($"{field}.method.type: '{other}' is not a method match type"),
            };
            if (regex is { } isRegex)
            {
                // gRPC calls are POSTs to /<package.Service>/<Method>.
                if (service is null && name is null)
                {
                    unsupported.Add($"{field}.method: set service, method or both");
                }
                else if (isRegex)
                {
                    json["uri"] = new JsonObject { ["regex"] = $"/{service ?? "[^/]+"}/{name ?? "[^/]+"}" };
                    shape = shape with { Rank = 2, Length = (service?.Length ?? 0) + (name?.Length ?? 0) };
                }
                else if (name is null)
                {
                    json["uri"] = new JsonObject { ["prefix"] = $"/{service}/" };
                    shape = shape with { Rank = 1, Length = service!.Length + 2 };
                }
                else
                {
                    json["uri"] = service is null
                        ? new JsonObject { ["regex"] = $"/[^/]+/{Regex.Escape(name)}" }
                        : new JsonObject { ["exact"] = $"/{service}/{name}" };
                    shape = shape with { Rank = service is null ? 2 : 0, Length = (service?.Length ?? 0) + name.Length };
                }
            }
        }

        return shape with { Headers = Headers(match, json, field, unsupported) };

        bool? Unsupported(string message)
        {
            unsupported.Add(message);
            return null;
        }
    }

    private static int Headers(JsonElement match, JsonObject json, string field, List<string> unsupported)
    {
        if (!match.TryGetProperty("headers", out var headers) || headers.ValueKind != JsonValueKind.Array)
        {
            return 0;
        }

        var result = new JsonObject();
        var h = 0;
        foreach (var header in headers.EnumerateArray())
        {
            var name = (Text(header, "name") ?? string.Empty).ToLowerInvariant();
            var value = Text(header, "value") ?? string.Empty;
            var kind = (Text(header, "type") ?? "Exact") switch
            {
                "Exact" => "exact",
                "RegularExpression" => "regex",
                var other => null,
            };
            if (kind is null)
            {
                unsupported.Add($"{field}.headers[{h}].type: '{Text(header, "type")}' is not a header match type");
            }
            else if (!result.ContainsKey(name))
            {
                result[name] = new JsonObject { [kind] = value }; // the Gateway API: the first entry for a name counts
            }

            h++;
        }

        if (result.Count > 0)
        {
            json["headers"] = result;
        }

        return result.Count;
    }

    private static int QueryParams(JsonElement match, JsonObject json, string field, List<string> unsupported)
    {
        if (!match.TryGetProperty("queryParams", out var queryParams) || queryParams.ValueKind != JsonValueKind.Array)
        {
            return 0;
        }

        var result = new JsonObject();
        var q = 0;
        foreach (var param in queryParams.EnumerateArray())
        {
            var name = Text(param, "name") ?? string.Empty; // compared exactly: query parameter names are case-sensitive
            var kind = (Text(param, "type") ?? "Exact") switch
            {
                "Exact" => "exact",
                "RegularExpression" => "regex",
                _ => null,
            };
            if (kind is null)
            {
                unsupported.Add($"{field}.queryParams[{q}].type: '{Text(param, "type")}' is not a query parameter match type");
            }
            else if (!result.ContainsKey(name))
            {
                result[name] = new JsonObject { [kind] = Text(param, "value") ?? string.Empty }; // the first entry for a name counts
            }

            q++;
        }

        if (result.Count > 0)
        {
            json["queryParams"] = result;
        }

        return result.Count;
    }

    /// <summary>
    /// The rule's filters as fields of our rule (headers, rewrite, redirect), plus "replacePrefixMatch" as a marker when
    /// a path modifier replaces the prefix (its matches must then be PathPrefix). What cannot be mapped is named in
    /// <paramref name="unsupported"/>.
    /// </summary>
    private static JsonObject Filters(CustomObject route, JsonElement rule, bool grpc, string field, Dictionary<string, ServiceResource> services,
        List<string> unsupported, List<(string Reason, string Message)> unresolved)
    {
        var result = new JsonObject();
        if (!rule.TryGetProperty("filters", out var filters) || filters.ValueKind != JsonValueKind.Array)
        {
            return result;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        var f = 0;
        foreach (var filter in filters.EnumerateArray())
        {
            var at = $"{field}.filters[{f++}]";
            var type = Text(filter, "type") ?? string.Empty;
            if (!seen.Add(type))
            {
                unsupported.Add($"{at}: {type} appears more than once in a rule");
                continue;
            }

            switch (type)
            {
                case "RequestHeaderModifier" when filter.TryGetProperty("requestHeaderModifier", out var modifier):
                    HeaderModifier(result, "request", modifier);
                    break;
                case "ResponseHeaderModifier" when filter.TryGetProperty("responseHeaderModifier", out var modifier):
                    HeaderModifier(result, "response", modifier);
                    break;
                case "URLRewrite" when !grpc && filter.TryGetProperty("urlRewrite", out var rewrite):
                    var ours = new JsonObject();
                    if (Text(rewrite, "hostname") is { } hostname)
                    {
                        ours["authority"] = hostname;
                    }

                    PathModifier(rewrite, ours, result, $"{at}.urlRewrite", unsupported);
                    result["rewrite"] = ours;
                    break;
                case "RequestRedirect" when !grpc && filter.TryGetProperty("requestRedirect", out var redirect):
                    result["redirect"] = Redirect(redirect, result, $"{at}.requestRedirect", unsupported);
                    break;
                case "RequestMirror" when filter.TryGetProperty("requestMirror", out var mirror):
                    Mirror(route, mirror, $"{at}.requestMirror", services, result, unsupported, unresolved);
                    break;
                case "RequestHeaderModifier" or "ResponseHeaderModifier" or "URLRewrite" or "RequestRedirect" or "RequestMirror" when !grpc || type.EndsWith("HeaderModifier", StringComparison.Ordinal) || type == "RequestMirror":
                    unsupported.Add($"{at}: type {type} without its {char.ToLowerInvariant(type[0])}{type[1..]} field");
                    break;
                default:
                    unsupported.Add($"{at}: {(type.Length == 0 ? "a filter without a type" : type)} is not supported by the mesh's sidecars{(type is "ExtensionRef" ? string.Empty : grpc ? " for a GRPCRoute" : string.Empty)}");
                    break;
            }
        }

        if (result.ContainsKey("rewrite") && result.ContainsKey("redirect"))
        {
            unsupported.Add($"{field}.filters: URLRewrite and RequestRedirect cannot be used in one rule");
        }

        return result;

        static void HeaderModifier(JsonObject result, string direction, JsonElement modifier)
        {
            var ours = new JsonObject();
            foreach (var list in (string[])["set", "add"])
            {
                if (modifier.TryGetProperty(list, out var entries) && entries.ValueKind == JsonValueKind.Array)
                {
                    var map = new JsonObject();
                    foreach (var entry in entries.EnumerateArray())
                    {
                        // Names are case-insensitive; the CRD keeps them unique, the first one counts otherwise.
                        var name = (Text(entry, "name") ?? string.Empty).ToLowerInvariant();
                        if (!map.ContainsKey(name))
                        {
                            map[name] = Text(entry, "value") ?? string.Empty;
                        }
                    }

                    ours[list] = map;
                }
            }

            if (modifier.TryGetProperty("remove", out var remove) && remove.ValueKind == JsonValueKind.Array)
            {
                ours["remove"] = new JsonArray([.. remove.EnumerateArray().Where(r => r.ValueKind == JsonValueKind.String).Select(r => (JsonNode)r.GetString()!)]);
            }

            var headers = result["headers"] as JsonObject ?? new JsonObject();
            headers[direction] = ours;
            result["headers"] = headers;
        }
    }

    private static JsonObject Redirect(JsonElement redirect, JsonObject result, string field, List<string> unsupported)
    {
        // The Gateway API's defaults: 302, and the port left to the route model, whose rules are the Gateway API's
        // (the scheme's well-known port when a scheme is set, else the port the request was sent to).
        var ours = new JsonObject { ["redirectCode"] = 302 };
        if (Text(redirect, "scheme") is { } scheme)
        {
            ours["scheme"] = scheme;
        }

        if (Text(redirect, "hostname") is { } hostname)
        {
            ours["authority"] = hostname;
        }

        if (redirect.TryGetProperty("port", out var port) && port.TryGetInt32(out var number))
        {
            ours["port"] = number;
        }

        if (redirect.TryGetProperty("statusCode", out var code) && code.TryGetInt32(out var status))
        {
            ours["redirectCode"] = status;
        }

        PathModifier(redirect, ours, result, field, unsupported);
        return ours;
    }

    private static void PathModifier(JsonElement filter, JsonObject ours, JsonObject result, string field, List<string> unsupported)
    {
        if (!filter.TryGetProperty("path", out var path))
        {
            return;
        }

        switch (Text(path, "type"))
        {
            case "ReplaceFullPath":
                ours["replaceFullPath"] = Text(path, "replaceFullPath") ?? string.Empty;
                break;
            case "ReplacePrefixMatch":
                ours["replacePrefixMatch"] = Text(path, "replacePrefixMatch") ?? string.Empty;
                result["replacePrefixMatch"] = true;
                break;
            case var other:
                unsupported.Add($"{field}.path.type: '{other}' is not a path modifier type");
                break;
        }
    }

    /// <summary>A reference to a Service (group "" or "core", kind Service); <paramref name="defaultKind"/> applies when kind is left out.</summary>
    private static bool IsServiceRef(JsonElement reference, string defaultGroup, string defaultKind)
    {
        var group = Text(reference, "group") ?? defaultGroup;
        var kind = Text(reference, "kind") ?? defaultKind;
        return group is "" or "core" && kind == "Service";
    }

    private static string HostOf(ServiceResource service)
    {
        var shortName = $"{service.Metadata.Name}.{service.Metadata.Namespace}";
        return service.Spec.Hosts.FirstOrDefault(h => string.Equals(h, shortName, StringComparison.OrdinalIgnoreCase)) ?? service.Spec.Hosts[0];
    }

    private static string? Text(JsonElement element, string property) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

    private static string Document(string ns, string name, string host, JsonArray rules) => new JsonObject
    {
        ["apiVersion"] = Resource.ApiVersion,
        ["kind"] = HttpRouteResource.KindName,
        ["metadata"] = new JsonObject { ["name"] = name, ["namespace"] = ns },
        ["spec"] = new JsonObject { ["hosts"] = new JsonArray(host), ["http"] = rules },
    }.ToJsonString();

    private sealed record MatchShape(JsonObject Json, int Rank, int Length, bool HasMethod, int Headers, int QueryParams);

    /// <summary>One (rule, match) of one route, with what the Gateway API orders matches by.</summary>
    private sealed record RuleEntry(JsonObject Rule, int Rank, int Length, bool HasMethod, int Headers, int QueryParams, int RouteOrder, int RuleIndex, int MatchIndex)
    {
        public static IComparer<RuleEntry> Precedence { get; } = Comparer<RuleEntry>.Create((a, b) =>
        {
            var c = a.Rank.CompareTo(b.Rank);                       // exact path, then prefix, then regular expression
            if (c == 0) c = b.Length.CompareTo(a.Length);          // the longest path first
            if (c == 0) c = b.HasMethod.CompareTo(a.HasMethod);    // a method match first
            if (c == 0) c = b.Headers.CompareTo(a.Headers);        // the most header matches first
            if (c == 0) c = b.QueryParams.CompareTo(a.QueryParams); // the most query parameter matches first
            if (c == 0) c = a.RouteOrder.CompareTo(b.RouteOrder);  // the oldest route, then namespace/name
            if (c == 0) c = a.RuleIndex.CompareTo(b.RuleIndex);
            if (c == 0) c = a.MatchIndex.CompareTo(b.MatchIndex);
            return c;
        });
    }
}
