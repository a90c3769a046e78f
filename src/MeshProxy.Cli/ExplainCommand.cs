using System.Text.Json;
using System.CommandLine;
using System.Net;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Authorization;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Cli;

/// <summary>
/// <c>meshproxy explain</c>: the decision the workload's sidecar would make for one request, with the
/// policy and rule that made it. It runs the sidecar's own code on the same input: the parser, the
/// policy selection and compilation (AuthorizationEngine.Build), the method guard and the path
/// normalizer, then Evaluate. A port that carries TCP (declared so, or <c>--tcp</c> for a client whose bytes are not
/// HTTP) is judged as the sidecar judges a connection: no method, path or token, Istio's rule for HTTP-only fields.
/// Exit 0 allowed, 1 denied (or refused with 400), 2 bad input.
/// </summary>
internal static class ExplainCommand
{
    public sealed record Query(
        string ConfigDir,
        string Workload,
        string? Labels,
        string? Source,
        string? SourceIp,
        string Method,
        string Host,
        int Port,
        string Path,
        IReadOnlyList<string> Headers,
        string? JwtClaims = null,
        bool Tcp = false);

    public static Command Create()
    {
        var configDir = new Option<string>("--config-dir") { Description = "A directory of resources (*.yaml / *.yml), as the control plane reads it", Required = true };
        var workload = new Option<string>("--workload") { Description = "The destination workload: <namespace>/<name>", Required = true };
        var labels = new Option<string>("--labels") { Description = "The workload's labels, k=v,k=v (default: its Sidecar resource's, if the directory has one)" };
        var source = new Option<string>("--source") { Description = "The caller's SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>); omit for a plaintext caller" };
        var sourceIp = new Option<string>("--source-ip") { Description = "The caller's address", DefaultValueFactory = _ => "127.0.0.1" };
        var method = new Option<string>("--method") { Description = "The request method", DefaultValueFactory = _ => "GET" };
        var host = new Option<string>("--host") { Description = "The Host (or :authority) the caller sends", Required = true };
        var port = new Option<int>("--port") { Description = "The port the caller dialled on the workload", DefaultValueFactory = _ => 80 };
        var path = new Option<string>("--path") { Description = "The request path, as sent (it is normalized as the sidecar does)", DefaultValueFactory = _ => "/" };
        var header = new Option<string[]>("--header") { Description = "A request header, name=value (repeatable)", AllowMultipleArgumentsPerToken = false };
        var jwtClaims = new Option<string>("--jwt-claims")
        {
            Description = "The claims (JSON object) of a JWT the request carries, taken as validly signed: iss and aud are checked against the RequestAuthentications that apply, then policies see iss/sub and the claims",
        };

        var tcp = new Option<bool>("--tcp")
        {
            Description = "A TCP stream rather than an HTTP request, whatever the port is declared as (a client whose first bytes are not HTTP); a port declared TCP is one anyway",
        };

        var command = new Command("explain", "Print ALLOW or DENY for one request (or TCP connection) to a workload, and the authorization policy and rule that decided it")
        {
            configDir, workload, labels, source, sourceIp, method, host, port, path, header, jwtClaims, tcp,
        };
        command.SetAction(parse => Run(
            new Query(
                parse.GetValue(configDir)!, parse.GetValue(workload)!, parse.GetValue(labels), parse.GetValue(source), parse.GetValue(sourceIp),
                parse.GetValue(method)!, parse.GetValue(host)!, parse.GetValue(port), parse.GetValue(path)!, parse.GetValue(header) ?? [], parse.GetValue(jwtClaims), parse.GetValue(tcp)),
            Console.Out,
            Console.Error));
        return command;
    }

    public static int Run(Query query, TextWriter output, TextWriter error)
    {
        if (!Directory.Exists(query.ConfigDir))
        {
            error.WriteLine($"meshproxy explain: '{query.ConfigDir}' is not a directory");
            return 2;
        }

        var slash = query.Workload.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0 || slash == query.Workload.Length - 1)
        {
            error.WriteLine($"meshproxy explain: --workload must be <namespace>/<name>, not '{query.Workload}'");
            return 2;
        }

        var (ns, name) = (query.Workload[..slash], query.Workload[(slash + 1)..]);
        if (!IPAddress.TryParse(query.SourceIp, out var sourceIp))
        {
            error.WriteLine($"meshproxy explain: --source-ip '{query.SourceIp}' is not an IP address");
            return 2;
        }

        if (query.Port is < 1 or > 65535)
        {
            error.WriteLine($"meshproxy explain: --port {query.Port} is out of range (1-65535)");
            return 2;
        }

        if (query.Source is { } s && !s.StartsWith("spiffe://", StringComparison.Ordinal))
        {
            error.WriteLine($"meshproxy explain: --source must be a SPIFFE ID (spiffe://...), not '{s}'");
            return 2;
        }

        // The sidecar refuses the whole snapshot when any resource is invalid; so does explain.
        var parsed = ResourceParser.ParseDirectory(query.ConfigDir);
        if (!parsed.IsValid)
        {
            foreach (var problem in parsed.Errors)
            {
                error.WriteLine(problem);
            }

            error.WriteLine($"meshproxy explain: {query.ConfigDir} has {parsed.Errors.Count} errors; a sidecar would refuse this configuration");
            return 2;
        }

        var sidecar = parsed.OfKind<SidecarResource>().FirstOrDefault(r => r.Spec.Workload.Namespace == ns && r.Spec.Workload.Name == name);
        IReadOnlyDictionary<string, string> workloadLabels;
        if (query.Labels is not null)
        {
            if (!TryParsePairs(query.Labels.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), out var pairs, out var bad))
            {
                error.WriteLine($"meshproxy explain: --labels: '{bad}' is not key=value");
                return 2;
            }

            workloadLabels = pairs.GroupBy(p => p.Key).ToDictionary(g => g.Key, g => g.Last().Value, StringComparer.Ordinal);
        }
        else
        {
            workloadLabels = sidecar?.Spec.Workload.Labels ?? new Dictionary<string, string>();
        }

        if (!TryParsePairs(query.Headers, out var headerPairs, out var badHeader))
        {
            error.WriteLine($"meshproxy explain: --header: '{badHeader}' is not name=value");
            return 2;
        }

        var headers = new HeaderDictionary();
        foreach (var (key, value) in headerPairs)
        {
            headers.Append(key, value);
        }

        var mesh = parsed.OfKind<MeshConfigResource>().FirstOrDefault()?.Spec ?? MeshConfigSpec.Default;
        var rootNamespace = mesh.RootNamespace;
        var engine = AuthorizationEngine.Build(parsed.OfKind<AuthorizationPolicyResource>(), ns, workloadLabels, rootNamespace);

        var labelText = workloadLabels.Count == 0 ? "no labels" : string.Join(',', workloadLabels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));
        var applying = engine.Policies.Count == 0
            ? "none"
            : string.Join(", ", engine.Policies.Select(p => $"{p.Key} ({p.ActionName}{(p.DryRun ? ", dry run" : string.Empty)})"));

        var declared = TcpPort(parsed, sidecar, ns, query.Port);
        if (declared is not null || query.Tcp)
        {
            return ExplainConnection(query, engine, mesh, parsed, sourceIp, declared ?? "--tcp", labelText, applying, output);
        }

        // The same two checks the inbound pipeline makes before evaluation.
        if (!MethodGuard.IsAcceptable(query.Method))
        {
            output.WriteLine("DENY (400)");
            output.WriteLine($"  refused before authorization: method '{query.Method}' is a standard method not in uppercase");
            return 1;
        }

        var rawPath = query.Path;
        var q = rawPath.IndexOf('?', StringComparison.Ordinal);
        if (q >= 0)
        {
            rawPath = rawPath[..q];
        }

        if (!PathNormalizer.TryNormalize(rawPath, mesh.PathNormalization, out var normalized, out var rejection))
        {
            output.WriteLine("DENY (400)");
            output.WriteLine($"  refused before authorization: path '{query.Path}': {rejection} (MeshConfig pathNormalization {mesh.PathNormalization.Spelling})");
            return 1;
        }

        // JWT: what the sidecar's authentication step would make of the token's claims (its signature taken as valid).
        RequestAuth? auth = null;
        var jwtText = "no token";
        if (query.JwtClaims is { } claimsText)
        {
            JsonElement claims;
            try
            {
                claims = JsonDocument.Parse(claimsText).RootElement;
            }
            catch (JsonException ex)
            {
                error.WriteLine($"meshproxy explain: --jwt-claims is not JSON: {ex.Message}");
                return 2;
            }

            if (RequestAuth.FromClaims(claims) is not { } candidate)
            {
                error.WriteLine("meshproxy explain: --jwt-claims must be a JSON object with a string iss");
                return 2;
            }

            var rules = parsed.OfKind<RequestAuthenticationResource>()
                .Where(r => (r.Metadata.Namespace == ns || r.Metadata.Namespace == rootNamespace) && r.Spec.Selects(workloadLabels))
                .SelectMany(r => r.Spec.JwtRules)
                .ToList();
            if (rules.Count == 0)
            {
                // The sidecar does not look at tokens then: the request reaches policy as one without a token.
                jwtText = "carried but not validated: no RequestAuthentication applies, so policies see no request principal";
            }
            else
            {
                var issuerRules = rules.Where(r => r.Issuer == claims.GetProperty("iss").GetString()).ToList();
                var refusal = issuerRules.Count == 0 ? "its issuer is not in any RequestAuthentication that applies"
                    : issuerRules.Any(r => r.AcceptsAudience(claims)) ? null
                    : "its aud names none of the audiences of its issuer's rule";
                if (refusal is not null)
                {
                    output.WriteLine("DENY (401)");
                    output.WriteLine($"  refused before authorization: the JWT is invalid: {refusal}");
                    return 1;
                }

                auth = candidate;
                jwtText = $"request principal {candidate.Principal}";
            }
        }

        var request = new AuthorizationRequest(query.Source, sourceIp, query.Host, query.Port, query.Method, normalized, headers, auth: auth);
        // CUSTOM first, as the sidecar does: a matching CUSTOM policy sends the request to its provider, whose answer
        // this command cannot know; it names the provider, and what the policies after it would decide.
        var custom = engine.MatchCustom(request);
        var customText = Custom(engine, mesh, parsed, custom, tcp: false, out var customRefusal);
        if (customRefusal is not null)
        {
            output.WriteLine("DENY (403)");
            output.WriteLine($"  {customRefusal}");
            output.WriteLine($"  custom:    {customText}");
            return 1;
        }

        var decision = engine.Evaluate(request);
        var decisive = decision.Enforced;

        output.WriteLine(decision.Allowed ? custom is { } asked ? $"ALLOW, if provider {asked.Provider} allows" : "ALLOW" : "DENY (403)");
        output.WriteLine($"  {decision.Explain()}");
        output.WriteLine($"  policy:    {(decisive.Policy is null ? "none (default)" : $"{decisive.Policy.Key} ({decisive.Policy.ActionName})")}");
        output.WriteLine($"  rule:      {(decisive.RuleIndex >= 0 ? decisive.RuleIndex.ToString(System.Globalization.CultureInfo.InvariantCulture) : "-")}");
        output.WriteLine($"  request:   {query.Method} {query.Host}:{query.Port}{normalized}{(normalized == rawPath ? string.Empty : $" (normalized from {rawPath}, pathNormalization {mesh.PathNormalization.Spelling})")} from {query.Source ?? "a plaintext caller"}");
        output.WriteLine($"  workload:  {ns}/{name} ({labelText}{(query.Labels is null && sidecar is null ? "; no Sidecar resource found" : string.Empty)})");
        output.WriteLine($"  jwt:       {jwtText}");
        output.WriteLine($"  custom:    {customText}");
        output.WriteLine($"  policies:  {applying}");
        return decision.Allowed ? 0 : 1;
    }

    /// <summary>
    /// A TCP connection, as the sidecar's TCP proxy authorizes it (Tcp/README.md): principal, source address and port;
    /// every rule that uses an HTTP-only field is named with what Istio's rule makes of it on TCP.
    /// </summary>
    private static int ExplainConnection(
        Query query, AuthorizationEngine engine, MeshConfigSpec mesh, MeshProxy.Config.Parsing.ParseResult parsed, IPAddress sourceIp, string why, string labelText, string applying, TextWriter output)
    {
        var request = AuthorizationRequest.ForConnection(query.Source, sourceIp, query.Port, sni: null);

        // CUSTOM first, as the sidecar's TCP proxy asks it (its rules read as a DENY's are on TCP).
        var custom = engine.MatchCustom(request);
        var customText = Custom(engine, mesh, parsed, custom, tcp: true, out var customRefusal);
        if (customRefusal is not null)
        {
            output.WriteLine("DENY (connection closed)");
            output.WriteLine($"  {customRefusal}");
            output.WriteLine($"  custom:    {customText}");
            return 1;
        }

        var decision = engine.Evaluate(request);
        var decisive = decision.Enforced;
        var ignored = new List<string>();
        if (query.Method != "GET" || query.Path != "/" || query.Headers.Count > 0 || query.JwtClaims is not null)
        {
            ignored.Add("--method, --path, --header and --jwt-claims do not apply to a byte stream");
        }

        var selected = engine.Policies.Select(p => p.Key).ToHashSet(StringComparer.Ordinal);
        var httpOnly = parsed.OfKind<AuthorizationPolicyResource>()
            .Where(p => p.Spec.Action != AuthorizationAction.Custom && selected.Contains($"{p.Metadata.Namespace}/{p.Metadata.Name}"))
            .SelectMany(p => p.Spec.Rules.Select((rule, i) => (Policy: p, Rule: rule, Index: i)))
            .Where(r => TcpRules.HasHttpOnlyFields(r.Rule))
            .Select(r => $"{r.Policy.Metadata.Namespace}/{r.Policy.Metadata.Name} rule {r.Index} " + (r.Policy.Spec.Action == AuthorizationAction.Allow
                ? "(ALLOW) never matches: it uses HTTP-only fields"
                : $"({r.Policy.Spec.Action.ToString().ToUpperInvariant()}) is read without its HTTP-only fields"))
            .ToList();

        output.WriteLine(decision.Allowed ? custom is { } asked ? $"ALLOW, if provider {asked.Provider} allows" : "ALLOW" : "DENY (connection closed)");
        output.WriteLine($"  {decision.Explain()}");
        output.WriteLine($"  policy:    {(decisive.Policy is null ? "none (default)" : $"{decisive.Policy.Key} ({decisive.Policy.ActionName})")}");
        output.WriteLine($"  rule:      {(decisive.RuleIndex >= 0 ? decisive.RuleIndex.ToString(System.Globalization.CultureInfo.InvariantCulture) : "-")}");
        output.WriteLine($"  request:   TCP connection to port {query.Port} ({why}) from {query.Source ?? "a plaintext caller"} at {sourceIp}");
        output.WriteLine($"  workload:  {query.Workload} ({labelText})");
        output.WriteLine($"  tcp rules: {(httpOnly.Count == 0 ? "no rule that applies uses an HTTP-only field (hosts, methods, paths, requestPrincipals, request.*)" : string.Join("; ", httpOnly))}");
        output.WriteLine($"  custom:    {customText}");
        foreach (var note in ignored)
        {
            output.WriteLine($"  note:      {note}");
        }

        output.WriteLine($"  policies:  {applying}");
        return decision.Allowed ? 0 : 1;
    }

    /// <summary>Why <paramref name="port"/> of the workload carries TCP: its Sidecar's app port, or a Service port targeting it, declared TCP; null if neither.</summary>
    private static string? TcpPort(MeshProxy.Config.Parsing.ParseResult parsed, SidecarResource? sidecar, string ns, int port)
    {
        if (sidecar?.Spec.App is { Protocol: AppProtocol.Tcp } app && app.Port == port)
        {
            return "the Sidecar's app port, declared TCP";
        }

        return parsed.OfKind<ServiceResource>()
            .Where(s => s.Metadata.Namespace == ns)
            .SelectMany(s => s.Spec.Ports.Where(p => p.Protocol == AppProtocol.Tcp && p.TargetPort == port).Select(p => $"Service {ns}/{s.Metadata.Name} port {p.Port} declared TCP"))
            .FirstOrDefault();
    }

    /// <summary>
    /// What the CUSTOM step does with the request (or, with <paramref name="tcp"/>, the connection): which provider is
    /// asked (where, how it is reached, how long, what is sent, what on failure), or that none is.
    /// <paramref name="refusal"/> is set when the sidecar would deny without asking (the provider is not defined in
    /// MeshConfig, or the workload's CUSTOM policies name more than one).
    /// </summary>
    private static string Custom(AuthorizationEngine engine, MeshConfigSpec mesh, MeshProxy.Config.Parsing.ParseResult parsed, CustomMatch? match, bool tcp, out string? refusal)
    {
        refusal = null;
        if (match is not { } custom)
        {
            return engine.CustomProviders.Count == 0 ? "no CUSTOM policy applies"
                : tcp ? "no CUSTOM policy matches the connection (read as a DENY rule is on TCP): no provider is asked"
                : "no CUSTOM policy matches: no provider is asked";
        }

        var by = $"CUSTOM policy {custom.Policy.Key} rule {custom.RuleIndex}";
        if (engine.CustomProviders.Count > 1)
        {
            refusal = $"denied: the workload's CUSTOM policies name {engine.CustomProviders.Count} providers ({string.Join(", ", engine.CustomProviders)}) and only one is allowed";
            return $"provider {custom.Provider} (by {by}) is not asked";
        }

        if (mesh.ExtensionProviders.FirstOrDefault(p => p.Name == custom.Provider) is not { } provider)
        {
            refusal = $"denied: {by} names provider '{custom.Provider}', which MeshConfig extensionProviders does not define";
            return $"provider {custom.Provider} is not asked";
        }

        var grpc = provider.ExtAuthzGrpc;
        var check = $"provider {custom.Provider} is asked first (by {by}): envoy.service.auth.v3 Check to {grpc.Service}:{grpc.Port} {Reach(parsed, grpc)}, " +
            $"timeout {MeshProxy.Config.Parsing.Durations.Format(grpc.Timeout)}; ";
        if (tcp)
        {
            // Envoy's network ext_authz filter, as Istio configures it for an envoyExtAuthzGrpc provider on TCP.
            return check + "once per connection, before any byte moves, with the addresses, the port and the peer's principal (no HTTP attributes" +
                (grpc.IncludeRequestBodyInCheck is null ? ")" : "; includeRequestBodyInCheck does not apply to a byte stream)") +
                $"; if it fails the connection is {(grpc.FailOpen ? "allowed (failOpen)" : "closed (statusOnError does not apply)")}; if it denies, the connection is closed";
        }

        var onError = grpc.FailOpen ? "allowed (failOpen)" : $"denied with {grpc.StatusOnError}";
        return check + $"{Body(grpc.IncludeRequestBodyInCheck)}; if it fails the request is {onError}; if it denies, its answer is the reply";
    }

    /// <summary>
    /// How the sidecar reaches the provider (ExternalAuthorization/README.md): over mTLS when its host and port are a
    /// mesh Service's (one of its names, with endpoints that have a service account, i.e. run sidecars), else h2c.
    /// </summary>
    private static string Reach(MeshProxy.Config.Parsing.ParseResult parsed, ExtAuthzGrpcProvider grpc) =>
        parsed.OfKind<ServiceResource>().FirstOrDefault(s =>
                s.Spec.Hosts.Contains(grpc.Service, StringComparer.OrdinalIgnoreCase) &&
                s.Spec.Ports.Any(p => p.Port == grpc.Port) &&
                s.Spec.Endpoints.Any(e => e.ServiceAccount is not null)) is { } service
            ? $"over mTLS with the workload's SVID (mesh Service {service.Metadata.Namespace}/{service.Metadata.Name}, whose sidecar sees this workload's identity)"
            : "in plaintext h2c (not a mesh Service with sidecar endpoints)";

    /// <summary>What of the request body the Check carries (includeRequestBodyInCheck, Envoy's with_request_body).</summary>
    private static string Body(RequestBodyInCheck? body) => body is null
        ? "the request body is not sent (no includeRequestBodyInCheck)"
        : $"the body's first {body.MaxRequestBytes} bytes are held and sent {(body.PackAsBytes ? "as raw_body" : "as body (UTF-8)")}, " +
          (body.AllowPartialMessage ? "a longer body cut to that length (allowPartialMessage)" : "a longer body answered 413 without asking");

    private static bool TryParsePairs(IEnumerable<string> items, out List<KeyValuePair<string, string>> pairs, out string? bad)
    {
        pairs = [];
        bad = null;
        foreach (var item in items)
        {
            var eq = item.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                bad = item;
                return false;
            }

            pairs.Add(new(item[..eq].Trim(), item[(eq + 1)..].Trim()));
        }

        return true;
    }
}
