using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Schema;

/// <summary>
/// The schema of every kind <see cref="Parsing.ResourceParser"/> accepts, as published in the meshproxy.io
/// CustomResourceDefinitions (<see cref="CrdWriter"/>). Written by hand beside the parsers and held to them by
/// tests (tests/MeshProxy.Config.Tests/Schema): every field here parses with the type given, a wrong type is
/// refused at that field, and every field the parser reads is here. Descriptions are what `kubectl explain` shows.
/// </summary>
public static class ResourceSchemas
{
    public const string Group = "meshproxy.io";
    public const string Version = "v1alpha1";

    private const string DurationPattern = @"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

    public static IReadOnlyList<KindSchema> All { get; } =
    [
        Sidecar(), Service(), HttpRoute(), DestinationPolicy(), EgressPolicy(), MeshConfig(), AuthorizationPolicy(), PeerAuthentication(), RequestAuthentication(),
    ];

    public static KindSchema Of(string kind) => All.First(k => k.Kind == kind);

    private static KindSchema Sidecar() => new(
        SidecarResource.KindName, "sidecars", ["mpsidecar"],
        "Sidecar scopes what a workload may reach (spec.egress), like Istio's Sidecar. In a cluster the workload, app " +
        "and listener fields come from the pod and its bootstrap; the control plane never pushes a Sidecar.",
        Obj("The workload and how its sidecar listens.",
            P("workload", Obj("Who the workload is.",
                P("name", Str("Workload name; defaults to metadata.name.", "reviews")),
                P("serviceAccount", Str("Identity: spiffe://<trust-domain>/ns/<namespace>/sa/<serviceAccount>. Defaults to default.", "reviews")),
                P("labels", Labels("Labels that policies' selector.matchLabels select; default metadata.labels.")))),
            P("app", Obj("The local application inbound traffic goes to, on 127.0.0.1.",
                P("port", Port("Port of the local app.", 8080)),
                P("protocol", Enum("What the app speaks; default HTTP.", AppProtocols.Names))) with { Required = ["port"] }),
            P("listeners", Obj("The sidecar's own ports (Istio's defaults).",
                P("outbound", Port("Outbound capture listener (0 = any); default 15001.", 15001, min: 0)),
                P("inbound", Port("Inbound mTLS listener; default 15006.", 15006, min: 0)),
                P("admin", Port("Admin listener, always on 127.0.0.1; default 15000.", 15000, min: 0)),
                P("stats", Port("/ready, /live and /metrics; default 15020.", 15020, min: 0)),
                P("inboundAddress", Str("Address of the inbound and stats listeners; default 0.0.0.0.", "0.0.0.0")),
                P("outboundAddress", Str("Address of the outbound listener; default 127.0.0.1.", "127.0.0.1")))),
            P("drainDuration", Dur("How long outbound keeps serving after shutdown starts (0-10m); default 5s.", "5s")),
            P("inboundConnectionPool", Obj("Istio's Sidecar inboundConnectionPool: what the workload accepts at once.",
                P("tcp", Obj("Connections.",
                    P("maxConnections", Count("Inbound TCP streams open at once; one more is refused (UO). Unset: no limit.")))))),
            P("controlPlane", Obj("Where the control plane is; present means pushed config.",
                P("address", Str("URL such as http://127.0.0.1:15010.", "http://127.0.0.1:15010")),
                P("tokenFile", Str("Bootstrap credential for the certificate authority.", "/var/run/meshproxy/token")),
                P("caFile", Str("PEM root(s) that alone vouch for an https:// control plane; required for https://.", "/var/run/meshproxy/ca.pem")),
                P("snapshotPath", Str("Where the last applied snapshot is saved.", "/var/run/meshproxy/snapshot"))) with { Required = ["address"] }),
            P("tls", Obj("The workload's identity from PEM files (standalone mode).",
                P("certificateChainFile", Str("X.509 SVID chain, leaf first.", "/etc/meshproxy/cert.pem")),
                P("privateKeyFile", Str("Its private key.", "/etc/meshproxy/key.pem")),
                P("trustBundleFile", Str("Roots the peers' certificates must chain to.", "/etc/meshproxy/bundle.pem")))
                with { Required = ["certificateChainFile", "privateKeyFile", "trustBundleFile"] }),
            P("egress", List("Services the workload may reach (Istio Sidecar egress); absent = every service.",
                Obj("One egress entry.",
                    P("hosts", Strings("namespace/host entries: namespace is a name, '.' (own) or '*'; host is a name, '*.domain' or '*'.", "./*")))
                    with { Required = ["hosts"] })))
            with { Required = ["app"] },
        [Column("App-Port", ".spec.app.port", "integer", "Port of the local app")]);

    private static KindSchema Service() => new(
        ServiceResource.KindName, "services", ["mpsvc"],
        "A mesh service: the host names it answers to, its ports and its endpoints, each with the identity it must present.",
        Obj("The service's names, ports and endpoints.",
            P("hosts", Strings("Names clients use ('*.x' allowed); default name, name.namespace, name.namespace.svc.cluster.local.", "reviews.default.svc.cluster.local")),
            P("addresses", Strings("Virtual IPs that transparent capture matches.", "10.96.0.10")),
            P("ports", List("Ports clients call.", Obj("One port.",
                P("port", Port("Port clients call.", 80)),
                P("targetPort", Port("Where endpoints listen; default port.", 8080)),
                P("protocol", Enum("What is spoken on the port; default HTTP.", AppProtocols.Names)),
                P("name", Str("Port name; default port-<port>.", "http"))) with { Required = ["port"] })),
            P("endpoints", List("Instances of the service.", Obj("One endpoint.",
                P("address", Str("IP address or host name.", "10.0.0.5")),
                P("port", Port("Overrides the service port's targetPort.", 15006)),
                P("labels", Labels("Endpoint labels.")),
                P("weight", Int("Load-balancing weight (1-1000000); default 1.", 1, 1_000_000, 10)),
                P("serviceAccount", Str("Identity the endpoint must present.", "reviews"))) with { Required = ["address"] })),
            P("subjectAltNames", Strings("Extra identities accepted for every endpoint.", "spiffe://cluster.local/ns/default/sa/legacy")))
            with { Required = ["ports"] },
        [Column("Hosts", ".spec.hosts", "string", "Names the service answers to")]);

    private static KindSchema HttpRoute() => new(
        HttpRouteResource.KindName, "httproutes", ["mproute"],
        "HTTP routing for services (Istio VirtualService, HTTP part): ordered rules, each with matches and weighted destinations or a redirect, header changes and a rewrite; the first rule that matches wins.",
        Obj("Hosts and rules.",
            P("hosts", Strings("Services this route applies to (one route per service).", "reviews")),
            P("http", List("Rules, tried in order.", Obj("One rule.",
                P("name", Str("Rule name; default rule-<n>.", "canary")),
                P("match", List("Conditions; the rule matches when any of them holds (or there is none).", Obj("All conditions must hold.",
                    P("uri", UriMatch()),
                    P("method", StringMatch("Request method.", "GET")),
                    P("headers", new SchemaNode(SchemaType.Mapping, "Header name (lowercased) to the match its value must satisfy.")
                    {
                        AdditionalProperties = StringMatch("Header value.", "v2"),
                    }),
                    P("queryParams", new SchemaNode(SchemaType.Mapping, "Query parameter name (case-sensitive) to the match its first value must satisfy.")
                    {
                        AdditionalProperties = Obj("Parameter value (decoded). Exactly one of exact or regex.",
                            P("exact", Str("Equal to this.", "2")),
                            P("regex", Str("Whole value matches this regular expression.", "[0-9]+"))) with { AtLeastOneOf = ["exact", "regex"], AtMostOneOf = ["exact", "regex"] },
                        KeyExample = "version",
                    })))),
                P("route", List("Weighted destinations.", Obj("One destination.",
                    P("destination", Obj("A Service's host and port.",
                        P("host", Str("A Service's host.", "reviews")),
                        P("port", Obj("Service port.", P("number", Port("Required if the Service has several ports.", 80)))))
                        with { Required = ["host"] }),
                    P("weight", Int("Share in percent (0-100); several must add up to 100.", 0, 100, 100))) with { Required = ["destination"] })),
                P("redirect", Obj("Answer with a redirect instead of forwarding (Istio HTTPRedirect; unset parts keep the request's).",
                    P("uri", Str("New path (the whole path, as Istio's redirect.uri).", "/v2/login")),
                    P("replaceFullPath", Str("New path, the whole path.", "/v2/login")),
                    P("replacePrefixMatch", Str("Replaces the uri prefix the request matched (Gateway API ReplacePrefixMatch); no prefix matched: put in front.", "/v2")),
                    P("authority", Str("New host name of Location.", "reviews.example.com")),
                    P("port", Port("Port of Location; default the scheme's (80/443) when scheme is set, else the service port called. 80 for http and 443 for https are left out.", 8443)),
                    P("scheme", Enum("Scheme of Location; default the request's.", ["https", "http"])),
                    P("redirectCode", Int("Status: 301 (default), 302, 303, 307 or 308.", 301, 308, 302)))
                    with { AtMostOneOf = ["uri", "replaceFullPath", "replacePrefixMatch"] }),
                P("rewrite", Obj("What the destination sees instead (Istio HTTPRewrite); not with redirect.",
                    P("uri", Str("Replaces the matched uri prefix when the rule matched by prefix or pathPrefix, else the whole path (Istio).", "/v2")),
                    P("replaceFullPath", Str("Replaces the whole path.", "/v2/login")),
                    P("replacePrefixMatch", Str("Replaces the uri prefix the request matched (Gateway API ReplacePrefixMatch: /foo -> /xyz turns /foo/bar into /xyz/bar); no prefix matched: put in front.", "/v2")),
                    P("authority", Str("Replaces the Host (:authority) header.", "reviews-v2.shop")))
                    with { AtLeastOneOf = ["uri", "replaceFullPath", "replacePrefixMatch", "authority"], AtMostOneOf = ["uri", "replaceFullPath", "replacePrefixMatch"] }),
                P("headers", Obj("Header changes (Istio Headers): set, then add, then remove.",
                    P("request", HeaderMutation("Before the request is sent to the destination.")),
                    P("response", HeaderMutation("Before the response goes back to the caller.")))),
                P("mirror", Obj("Also send a copy of the rule's requests here (Istio mirror), Host suffixed -shadow, the answer discarded; bodies up to 64 KiB only; not with redirect.",
                    P("host", Str("A Service's host.", "reviews-v2")),
                    P("port", Obj("Service port.", P("number", Port("Required if the Service has several ports.", 80)))))
                    with { Required = ["host"] }),
                P("mirrorPercentage", Obj("Share of the rule's requests mirrored (Istio mirrorPercentage).",
                    P("value", Num("Percent, 0-100; default 100.", 0, 100, 10)))),
                P("timeout", Dur("Whole request, retries included (1ms-24h).", "10s")),
                P("retries", Obj("Istio's HTTPRetry.",
                    P("attempts", Int("Retries (0-10).", 0, 10, 2)),
                    P("perTryTimeout", Dur("Timeout of each attempt.", "2s")),
                    P("retryOn", Str("Comma list of conditions (5xx, gateway-error, reset, connect-failure, refused-stream, retriable-4xx, retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable) or status codes.", "5xx,connect-failure")))
                    with { Required = ["attempts"] })) with { AtLeastOneOf = ["route", "redirect"], AtMostOneOf = ["route", "redirect"] })))
            with { Required = ["hosts", "http"] },
        [Column("Hosts", ".spec.hosts", "string", "Services routed")]);

    private static KindSchema DestinationPolicy() => new(
        DestinationPolicyResource.KindName, "destinationpolicies", ["mpdp"],
        "How callers treat one destination service (Istio DestinationRule trafficPolicy): load balancing, connection pool, outlier detection, retry budget.",
        Obj("The destination and its traffic policy.",
            P("host", Str("The destination service's host (no wildcard).", "reviews")),
            P("loadBalancer", Obj("Balancing algorithm.",
                P("simple", Enum("Default LEAST_REQUEST.", ["LEAST_REQUEST", "ROUND_ROBIN", "PEAK_EWMA", "RANDOM"]))) with { Required = ["simple"] }),
            P("connectionPool", Obj("Circuit breaking; unset limits are unlimited.",
                P("tcp", Obj("Connections.",
                    P("maxConnections", Count("Upstream connections across the destination's endpoints.")),
                    P("connectTimeout", Dur("Default 10s.", "3s")),
                    P("idleTimeout", Dur("A TCP stream that moves no byte either way for this long is closed; default 1h, 0s never.", "30m")))),
                P("http", Obj("Requests.",
                    P("http1MaxPendingRequests", Count("Requests that may wait for a connection or stream.")),
                    P("http2MaxRequests", Count("Requests in flight.")),
                    P("maxRequestsPerConnection", Count("Requests a connection carries before it is closed.")),
                    P("maxRetries", Int("Retries in flight at once.", 0, int.MaxValue, 3)),
                    P("idleTimeout", Dur("Idle connections are closed after this; default 90s.", "60s")))))),
            P("outlierDetection", Obj("Passive health checking; absent leaves the default one on.",
                P("enabled", Bool("false turns outlier detection off (then set nothing else); default true.", true)),
                P("consecutive5xxErrors", Int("5xx in a row that eject an endpoint (0 disables); default 5.", 0, int.MaxValue, 5)),
                P("consecutiveGatewayErrors", Count("502/503/504 in a row that eject an endpoint.")),
                P("consecutiveLocalOriginFailures", Count("Connect failures, resets, per-try timeouts in a row (with splitExternalLocalOriginErrors).")),
                P("splitExternalLocalOriginErrors", Bool("Count local-origin failures apart from upstream responses.", true)),
                P("interval", Dur("Analysis sweep; default 10s.", "10s")),
                P("baseEjectionTime", Dur("Ejection time, times the number of ejections; default 30s.", "30s")),
                P("maxEjectionPercent", Int("Most endpoints ejected at once, in percent; default 10.", 0, 100, 10)))),
            P("retryBudget", Obj("Retries as a share of requests in flight, with a floor.",
                P("percent", Num("Percent of requests in flight; default 20.", 0, 100, 20)),
                P("minRetryConcurrency", Int("Istio's floor: retries always allowed at once.", 0, int.MaxValue, 2)),
                P("minRetriesPerSecond", Int("linkerd's floor (default 10 if neither is set).", 0, int.MaxValue, 10)))
                with { AtMostOneOf = ["minRetryConcurrency", "minRetriesPerSecond"] }))
            with { Required = ["host"] },
        [Column("Host", ".spec.host", "string", "Destination service")]);

    private static KindSchema EgressPolicy() => new(
        EgressPolicyResource.KindName, "egresspolicies", ["mpegress"],
        "Which workloads may reach which hosts outside the mesh. Applies to the workloads of its namespace that match the selector (mesh-wide in the root namespace); policies add up.",
        Obj("Selected workloads, hosts and ports.",
            P("selector", Obj("Workloads it applies to; absent = all in scope.", P("matchLabels", Labels("Labels a workload must all carry.")))),
            P("hosts", Strings("Host names or '*.domain' wildcards (a bare '*' is refused).", "api.example.com")),
            P("ports", List("Allowed ports.", Obj("One port.",
                P("number", Port("Port.", 443)),
                P("protocol", Enum("HTTP is routed by Host; HTTPS and TLS pass through by SNI.", ["HTTP", "HTTPS", "TLS", "TCP"])),
                P("name", Str("Port name.", "https"))) with { Required = ["number", "protocol"] })))
            with { Required = ["hosts", "ports"] },
        [Column("Hosts", ".spec.hosts", "string", "Allowed hosts")]);

    private static KindSchema MeshConfig() => new(
        MeshConfigResource.KindName, "meshconfigs", ["mpmesh"],
        "Mesh-wide settings (Istio's MeshConfig, trimmed); at most one per mesh.",
        Obj("Identity, mTLS, outbound policy and telemetry.",
            P("trustDomain", Str("SPIFFE trust domain; default cluster.local.", "cluster.local")),
            P("rootNamespace", Str("Policies here apply mesh-wide; default meshproxy-system.", "meshproxy-system")),
            P("certificateTtl", Dur("Workload certificate lifetime (10m-365d); default 24h.", "24h")),
            P("maxCertificateTtl", Dur("Longest the CA signs; default max(ttl, 48h).", "48h")),
            P("mtls", Obj("Inbound mutual TLS.", P("mode", Enum("STRICT requires client certificates; PERMISSIVE also accepts plaintext.", ["STRICT", "PERMISSIVE"])))),
            P("outboundTrafficPolicy", Obj("Unknown destinations.", P("mode", Enum("Refused or passed; default REGISTRY_ONLY.", ["REGISTRY_ONLY", "ALLOW_ANY"])))),
            P("accessLog", Obj("One JSON line per request; writing the block turns it on.",
                P("enabled", Bool("Default true once the block is written.", true)),
                P("path", Str("/dev/stdout or a file.", "/dev/stdout")))),
            P("tracing", Obj("OpenTelemetry tracing.",
                P("sampling", Num("Percent of requests traced; default 1.", 0, 100, 1)),
                P("propagation", Enum("Header format; default w3c.", ["w3c", "b3", "b3multi"])),
                P("otlpEndpoint", Str("OTLP/HTTP collector URL.", "http://127.0.0.1:4318")))),
            P("pathNormalization", Obj("How inbound paths are normalized before policy matching; the app receives the normalized path.",
                P("normalization", Enum("STRICT (default) is MERGE_SLASHES plus a 400 for '\\', %2F and %5C; NONE, BASE, MERGE_SLASHES and DECODE_AND_MERGE_SLASHES as in Istio.",
                    [.. PathNormalizationSpec.NormalizationWords.Select(w => w.Key)])),
                P("pathParameters", Enum("';' in a path: REJECT (default) answers 400, STRIP removes each segment's ';...' as servlet containers do, KEEP treats it as a character.",
                    [.. PathNormalizationSpec.PathParameterWords.Select(w => w.Key)])))),
            P("extensionProviders", List("External services policies delegate to: the CUSTOM action's providers (Istio's extensionProviders).",
                Obj("One provider: a unique name and its kind (envoyExtAuthzGrpc, the one supported).",
                    P("name", Str("What a CUSTOM AuthorizationPolicy's provider.name refers to.", "opa")),
                    P("envoyExtAuthzGrpc", Obj("A server speaking envoy.service.auth.v3.Authorization/Check over gRPC (h2c).",
                        P("service", Str("Host name or IP of the server; Istio's namespace/host form is accepted.", "opa.opa-system.svc.cluster.local")),
                        P("port", Port("Its gRPC port.", 9191)),
                        P("timeout", Dur("How long a Check may take before it counts as failed; default 10m (Istio's).", "500ms")),
                        P("failOpen", Bool("Let the request through when the Check fails or times out; default false (fail closed).", false)),
                        P("statusOnError", Str("HTTP status returned when the Check fails and failOpen is false; default \"403\" (Envoy's status_on_error).", "503")),
                        P("includeRequestHeadersInCheck", Strings("Request headers sent in the Check (name, prefix*, *suffix); absent = all.", "authorization")),
                        P("headersToUpstreamOnAllow", Strings("Headers of an OK answer set on the request for the app; absent = all.", "x-user")),
                        P("headersToDownstreamOnDeny", Strings("Headers of a denial sent to the client; absent = all.", "www-authenticate")),
                        P("includeRequestBodyInCheck", Obj("Send the request body in the Check (held in memory up to maxRequestBytes; the app still gets all of it).",
                            P("maxRequestBytes", Int("Bytes held and sent (1-16777216); a longer body is answered 413 unless allowPartialMessage.", 1, RequestBodyInCheck.MaxBytesLimit, 8192)),
                            P("allowPartialMessage", Bool("Send the first maxRequestBytes of a longer body instead of answering 413; default false.", false)),
                            P("packAsBytes", Bool("Send the body as raw_body (bytes) rather than body (UTF-8 string); default false.", false)))
                            with { Required = ["maxRequestBytes"] }))
                        with { Required = ["service", "port"] }))
                    with { Required = ["name", "envoyExtAuthzGrpc"] }))),
        [Column("Trust-Domain", ".spec.trustDomain", "string", "SPIFFE trust domain")]);

    private static KindSchema AuthorizationPolicy() => new(
        AuthorizationPolicyResource.KindName, "authorizationpolicies", ["mpauthz"],
        "Access control for workloads with Istio's AuthorizationPolicy semantics: CUSTOM (an external provider decides, first), then DENY, then ALLOW " +
        "(default-deny once any ALLOW applies); AUDIT only reports. " +
        "Unknown or unsupported fields are refused, never ignored.",
        Obj("Selected workloads, action and rules.",
            P("selector", Obj("Workloads it applies to; absent = all of the namespace (or mesh, in the root namespace).", P("matchLabels", Labels("Labels a workload must all carry.")))),
            P("action", Enum("What a matching rule does; default ALLOW. CUSTOM sends the request to provider.name.", ["ALLOW", "DENY", "AUDIT", "CUSTOM"])),
            P("provider", Obj("The extension provider (MeshConfig extensionProviders) a CUSTOM policy asks; only with CUSTOM.",
                P("name", Str("The provider's name.", "opa"))) with { Required = ["name"] }),
            P("dryRun", Bool("Evaluate and report, never enforce (ALLOW and DENY only).", false)),
            P("rules", List("A request matches the policy when any rule matches; no rules matches nothing.", Obj("Matches when any from, any to and every when hold.",
                P("from", List("Sources.", Obj("One source.", P("source", Obj("Peer attributes; at least one field.",
                    P("principals", Strings("Peer identities (trust-domain/ns/x/sa/y), with '*' prefix or suffix.", "cluster.local/ns/default/sa/web")),
                    P("notPrincipals", Strings("Identities that must not match.", "cluster.local/ns/default/sa/batch")),
                    P("namespaces", Strings("Peer namespaces.", "default")),
                    P("notNamespaces", Strings("Namespaces that must not match.", "test")),
                    P("ipBlocks", Strings("Peer IPs or CIDR blocks.", "10.0.0.0/8")),
                    P("notIpBlocks", Strings("IPs or blocks that must not match.", "10.1.0.0/16")),
                    P("requestPrincipals", Strings("JWT principals (iss/sub) a RequestAuthentication validated, with '*' prefix or suffix.", "https://issuer.example.com/alice")),
                    P("notRequestPrincipals", Strings("JWT principals that must not match.", "https://issuer.example.com/bob")))
                    with { AtLeastOneOf = ["principals", "notPrincipals", "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks", "requestPrincipals", "notRequestPrincipals"] }))
                    with { Required = ["source"] })),
                P("to", List("Operations.", Obj("One operation.", P("operation", Obj("Request attributes; at least one field.",
                    P("hosts", Strings("Host header values, without port.", "reviews")),
                    P("notHosts", Strings("Hosts that must not match.", "admin")),
                    P("ports", Strings("Destination ports.", "8080")),
                    P("notPorts", Strings("Ports that must not match.", "9090")),
                    P("methods", Strings("HTTP methods (exact, case-sensitive).", "GET")),
                    P("notMethods", Strings("Methods that must not match.", "DELETE")),
                    P("paths", Strings("Normalized paths, with '*' prefix or suffix.", "/api/*")),
                    P("notPaths", Strings("Paths that must not match.", "/api/admin/*")))
                    with { AtLeastOneOf = ["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"] }))
                    with { Required = ["operation"] })),
                P("when", List("Conditions, all of which must hold.", Obj("One condition.",
                    P("key", Str("request.headers[<name>], source.ip, source.namespace, source.principal, destination.port, connection.sni, " +
                        "request.auth.principal, request.auth.audiences, request.auth.presenter or request.auth.claims[<name>] (nested: [<a>][<b>]).", "source.namespace")),
                    P("values", Strings("Values, one of which must match.", "default")),
                    P("notValues", Strings("Values none of which may match.", "test"))) with { Required = ["key"], AtLeastOneOf = ["values", "notValues"] }))))))
            with
            {
                Dependencies =
                [
                    new("provider", "action", "provider is only for action CUSTOM") { NeedsValue = "CUSTOM" },
                    new("action", "provider", "action CUSTOM needs provider.name") { When = "CUSTOM" },
                ],
            },
        [Column("Action", ".spec.action", "string", "ALLOW, DENY, AUDIT or CUSTOM")]);

    private static KindSchema PeerAuthentication() => new(
        PeerAuthenticationResource.KindName, "peerauthentications", ["mppeerauth"],
        "Which inbound connections workloads accept, with Istio's PeerAuthentication semantics: mesh-wide in the root namespace " +
        "without a selector, namespace-wide without one, per workload with one; the most specific mode wins (port, workload, " +
        "namespace, mesh, then MeshConfig mtls.mode, STRICT by default). Unknown fields are refused, never ignored.",
        Obj("Selected workloads and their mTLS modes.",
            P("selector", Obj("Workloads of this namespace it applies to; absent = the whole namespace (the mesh, in the root namespace).",
                P("matchLabels", Labels("Labels a workload must all carry (at least one).")))
                with { Required = ["matchLabels"] }),
            P("mtls", Obj("The mode for every port of the selected workloads.", P("mode", Enum(MtlsModeDescription, PeerMtlsModes)))),
            P("portLevelMtls", new SchemaNode(SchemaType.Mapping, "Modes per workload target port (needs a selector): the port number to its mode.")
            {
                AdditionalProperties = Obj("The mode on this port.", P("mode", Enum(MtlsModeDescription, PeerMtlsModes))) with { Required = ["mode"] },
                KeyExample = "8080",
            }))
            with { Dependencies = [new("portLevelMtls", "selector", "portLevelMtls needs a workload selector")] },
        [Column("Mode", ".spec.mtls.mode", "string", "STRICT, PERMISSIVE, DISABLE or UNSET (inherited)")]);

    private const string MtlsModeDescription =
        "STRICT: mTLS with a verified SPIFFE peer only; PERMISSIVE: mTLS and plaintext (no peer identity); DISABLE: plaintext only; UNSET (default): inherited.";

    // A property, not a field: the kinds above are built in a static initializer that runs before later fields are set.
    private static IReadOnlyList<string> PeerMtlsModes => ["UNSET", "STRICT", "PERMISSIVE", "DISABLE"];

    private static KindSchema RequestAuthentication() => new(
        RequestAuthenticationResource.KindName, "requestauthentications", ["mpra"],
        "Which JSON Web Tokens the selected workloads accept (Istio's RequestAuthentication): a request with a token no rule " +
        "validates gets 401; one without a token is left to AuthorizationPolicy (requestPrincipals, request.auth.*). Unknown fields are refused.",
        Obj("Selected workloads and the issuers they trust.",
            P("selector", Obj("Workloads it applies to; absent = all of the namespace (or mesh, in the root namespace).", P("matchLabels", Labels("Labels a workload must all carry.")))),
            P("jwtRules", List("Trusted issuers, one rule each.", Obj("One issuer: its keys, the audiences accepted, where the token is.",
                P("issuer", Str("The token's iss must equal this.", "https://issuer.example.com")),
                P("audiences", Strings("The token's aud must name one of these; absent = not checked.", "billing")),
                P("jwks", Str("The JWK Set (JSON) inline: RSA (2048+ bits), EC P-256/P-384/P-521 or Ed25519 keys.", "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec-1\",\"x\":\"Ww1DyiyX1fEJpWMqsgzu-jFWp9_RSQSDqve68E3_bJ8\",\"y\":\"LMAPTe3ZnO2lSOpzTPKFE05feNjhJv7ML1GWCcHd-dg\"}]}")),
                P("jwksUri", Str("Where the JWK Set is fetched from (https; refreshed, the last good set kept through an outage).", "https://issuer.example.com/.well-known/jwks.json")),
                P("jwksFile", Str("A JWK Set file on the sidecar's host (a mounted Secret or ConfigMap); re-read every 30 s, the last good set kept.", "/etc/meshproxy/jwks/keys.json")),
                P("fromHeaders", List("Headers the token is read from; default Authorization with prefix \"Bearer \".", Obj("One header.",
                    P("name", Str("Header name.", "x-jwt-assertion")),
                    P("prefix", Str("Text before the token, such as \"Bearer \".", "Bearer "))) with { Required = ["name"] })),
                P("fromParams", Strings("Query parameters the token is read from; default access_token (when fromHeaders is absent too).", "access_token")),
                P("forwardOriginalToken", Bool("Keep the token's header for the app; default false (removed once validated).", false)),
                P("outputClaimToHeaders", List("Claims copied into request headers for the app (any such header the caller sent is removed).", Obj("One claim.",
                    P("header", Str("Header to set.", "x-jwt-sub")),
                    P("claim", Str("Top-level claim (string, number or boolean).", "sub"))) with { Required = ["header", "claim"] })))
                with { Required = ["issuer"], AtLeastOneOf = ["jwks", "jwksUri", "jwksFile"], AtMostOneOf = ["jwks", "jwksUri", "jwksFile"] }))),
        [Column("Issuers", ".spec.jwtRules[*].issuer", "string", "Trusted issuers")]);

    private static SchemaNode StringMatch(string description, string example) =>
        Obj(description + " Exactly one of exact, prefix or regex.",
            P("exact", Str("Equal to this.", example)),
            P("prefix", Str("Starts with this.", example)),
            P("regex", Str("Whole value matches this regular expression.", example + ".*"))) with { AtLeastOneOf = ["exact", "prefix", "regex"], AtMostOneOf = ["exact", "prefix", "regex"] };

    private static SchemaNode UriMatch() =>
        Obj("Request path. Exactly one of exact, prefix, pathPrefix or regex.",
            P("exact", Str("Equal to this.", "/api")),
            P("prefix", Str("Starts with this (character by character).", "/api")),
            P("pathPrefix", Str("Whole path segments (Gateway API PathPrefix): /api matches /api, /api/ and /api/v1, not /apiv1.", "/api")),
            P("regex", Str("Whole value matches this regular expression.", "/api.*"))) with { AtLeastOneOf = ["exact", "prefix", "pathPrefix", "regex"], AtMostOneOf = ["exact", "prefix", "pathPrefix", "regex"] };

    private static SchemaNode HeaderMutation(string description) =>
        Obj(description,
            P("set", new SchemaNode(SchemaType.Mapping, "Header name to the value that replaces every value it had.") { AdditionalProperties = Str("Header value.", "v2"), KeyExample = "x-version" }),
            P("add", new SchemaNode(SchemaType.Mapping, "Header name to a value appended to those it has.") { AdditionalProperties = Str("Header value.", "canary"), KeyExample = "x-tags" }),
            P("remove", Strings("Header names to remove.", "x-debug")));

    private static SchemaProperty P(string name, SchemaNode node) => new(name, node);

    private static SchemaNode Obj(string description, params SchemaProperty[] properties) =>
        new(SchemaType.Mapping, description) { Properties = properties };

    private static SchemaNode List(string description, SchemaNode items) => new(SchemaType.List, description) { Items = items };

    private static SchemaNode Strings(string description, string example) => List(description, Str("One entry.", example));

    private static SchemaNode Labels(string description) =>
        new(SchemaType.Mapping, description) { AdditionalProperties = Str("Label value.", "v1") };

    private static SchemaNode Str(string description, string example) => new(SchemaType.Text, description) { Example = example };

    private static SchemaNode Dur(string description, string example) =>
        new(SchemaType.Text, description + " Written like 250ms, 5s, 1m30s, 1h.") { Example = example, Pattern = DurationPattern };

    private static SchemaNode Enum(string description, IReadOnlyList<string> values) =>
        new(SchemaType.Text, description) { Enum = values, Example = values[0] };

    private static SchemaNode Int(string description, long min, long max, long example) =>
        new(SchemaType.Whole, description) { Minimum = min, Maximum = max, Example = example.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    private static SchemaNode Num(string description, double min, double max, double example) =>
        new(SchemaType.Number, description) { Minimum = min, Maximum = max, Example = example.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    private static SchemaNode Bool(string description, bool example) => new(SchemaType.Boolean, description) { Example = example ? "true" : "false" };

    private static SchemaNode Port(string description, int example, int min = 1) => Int(description, min, 65535, example);

    /// <summary>A limit: absent means unlimited; 0 is refused because it would let nothing through.</summary>
    private static SchemaNode Count(string description) => Int(description + " At least 1; absent = unlimited.", 1, int.MaxValue, 100);

    private static PrinterColumn Column(string name, string path, string type, string description) => new(name, path, type, description);
}
