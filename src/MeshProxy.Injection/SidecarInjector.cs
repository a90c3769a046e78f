using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Text.Json.Nodes;
using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;
using MeshProxy.Injection.Capture;
using MeshProxy.Injection.Internal;

namespace MeshProxy.Injection;

/// <summary>
/// Adds the init step and the sidecar to a pod. Pure: a pod object in, a new pod object out; the
/// webhook turns the difference into a JSONPatch, kube-inject writes the result back as YAML.
/// </summary>
public sealed partial class SidecarInjector(InjectorOptions options)
{
    public const string InitContainerName = "meshproxy-init";
    public const string SidecarContainerName = "meshproxy";
    public const int StatsPort = 15020;
    public const string TokenVolume = "meshproxy-token";
    public const string CertsVolume = "meshproxy-certs";
    public const string SnapshotVolume = "meshproxy-snapshot";
    public const string PodInfoVolume = "meshproxy-podinfo";
    public const string TrustBundleVolume = "meshproxy-ca-root-cert";

    public const string TokenDirectory = "/var/run/secrets/meshproxy/tokens";
    public const string CertsDirectory = "/var/run/secrets/meshproxy/certs";
    public const string SnapshotDirectory = "/var/lib/meshproxy/snapshot";
    public const string PodInfoDirectory = "/etc/meshproxy/podinfo";

    /// <summary>The readiness waiter shipped in the sidecar image (see docker/sidecar.Dockerfile).</summary>
    public static readonly string[] WaitCommand = ["/app/init/meshproxy-init", "wait", "--url", $"http://127.0.0.1:{StatsPort}/ready", "--timeout-seconds", "120"];

    /// <summary>The bootstrap's app port for a pod that declares none: the schema requires one, and nothing is captured to it.</summary>
    private const int NominalAppPort = 8080;

    private static readonly string[] VolumeNames = [TokenVolume, CertsVolume, SnapshotVolume, PodInfoVolume, TrustBundleVolume];
    private static readonly string[] ContainerLists = ["containers", "initContainers"];

    public InjectorOptions Options => options;

    /// <summary>Injects <paramref name="pod"/> (not modified) or says why not; throws <see cref="InjectionException"/> for a pod that asks for something impossible.</summary>
    public InjectionResult Inject(JsonObject pod, InjectionTarget target)
    {
        var metadata = pod["metadata"] as JsonObject;
        var annotations = StringMap(metadata, "annotations");
        var labels = StringMap(metadata, "labels");

        if (annotations.ContainsKey(Annotations.Status) || HasContainer(pod, InitContainerName) || HasContainer(pod, SidecarContainerName))
        {
            return new InjectionResult(InjectionOutcome.AlreadyInjected, pod, "already injected");
        }

        var choice = labels.GetValueOrDefault(Annotations.Inject) ?? annotations.GetValueOrDefault(Annotations.Inject);
        var wanted = choice is null ? target.NamespaceEnabled : ParseBool(Annotations.Inject, choice);
        if (!wanted)
        {
            return new InjectionResult(InjectionOutcome.Skipped, pod, choice is null ? "injection is not enabled for the namespace" : $"{Annotations.Inject}={choice}");
        }

        if (pod["spec"] is not JsonObject spec)
        {
            throw new InjectionException("the pod has no spec");
        }

        if (spec["hostNetwork"]?.GetValueKind() == JsonValueKind.True)
        {
            return new InjectionResult(InjectionOutcome.Skipped, pod, "host-network pods share the node's network: capturing it would capture the node");
        }

        if (spec["containers"] is not JsonArray { Count: > 0 } appContainers)
        {
            throw new InjectionException("spec.containers is empty");
        }

        var existingVolumes = (spec["volumes"] as JsonArray ?? []).Select(v => v?["name"]?.GetValue<string>()).ToHashSet();
        if (VolumeNames.FirstOrDefault(existingVolumes.Contains) is { } taken)
        {
            throw new InjectionException($"the pod already has a volume named '{taken}'");
        }

        var app = AppPort(appContainers, annotations);
        var workload = WorkloadName(metadata, labels, target);
        var serviceAccount = spec["serviceAccountName"]?.GetValue<string>() ?? spec["serviceAccount"]?.GetValue<string>() ?? "default";
        var native = annotations.TryGetValue(Annotations.NativeSidecar, out var n) ? ParseBool(Annotations.NativeSidecar, n) : options.NativeSidecars;
        var hold = !annotations.TryGetValue(Annotations.HoldApplicationUntilProxyStarts, out var h) || ParseBool(Annotations.HoldApplicationUntilProxyStarts, h);
        var resources = Resources(annotations, out var memoryLimit);
        var gcPercent = annotations.TryGetValue(Annotations.GcHeapHardLimitPercent, out var g) ? ParsePercent(g) : options.GcHeapHardLimitPercent;
        if (memoryLimit is { } limitBytes && SidecarMemoryBudget.Check(limitBytes, gcPercent) is { } tooSmall)
        {
            var given = annotations.GetValueOrDefault(Annotations.ProxyMemoryLimit) ?? options.MemoryLimit;
            throw new InjectionException($"{Annotations.ProxyMemoryLimit}: '{given}' {tooSmall}");
        }

        var drain = annotations.GetValueOrDefault(Annotations.DrainDuration) ?? "5s";
        if (!IsDuration(drain))
        {
            throw new InjectionException($"{Annotations.DrainDuration}: '{drain}' is not a duration such as 5s, 500ms or 1m");
        }

        // The bootstrap keeps the injector's values and the specific annotations; the pod's config fragment goes to the
        // sidecar as it is, less what a specific annotation already decided (those win, as in Istio), and is merged
        // there. The capture is built for the merged result, so the rules match the ports the sidecar will use.
        var podOverride = ProxyConfig(annotations);
        var baseSpec = new SidecarSpec(
            new WorkloadSpec(workload, target.Namespace, serviceAccount, labels),
            new AppSpec(app?.Port ?? NominalAppPort, AppProtocols.Parse(app?.Protocol)),
            ListenerPorts.Default,
            Durations.TryParse(drain, out var drainTime) ? drainTime : TimeSpan.Zero,
            ControlPlane: null);
        if (podOverride?.ConflictsWith(baseSpec) is [_, ..] conflicts)
        {
            throw new InjectionException(string.Join("; ", conflicts));
        }

        var merged = podOverride?.ApplyTo(baseSpec) ?? baseSpec;
        var capture = Capture(annotations, podOverride?.AppPort is not null ? merged.App.Port : app?.Port) with
        {
            OutboundPort = merged.Listeners.Outbound,
            InboundPort = merged.Listeners.Inbound,
        };

        var rewriteProbes = !annotations.TryGetValue(Annotations.RewriteAppHttpProbers, out var r) || ParseBool(Annotations.RewriteAppHttpProbers, r);
        var exitOnAppExit = annotations.TryGetValue(Annotations.ExitOnAppExit, out var e) && ParseBool(Annotations.ExitOnAppExit, e) && !native;
        if (exitOnAppExit && (spec["restartPolicy"]?.GetValue<string>() ?? "Always") != "Never")
        {
            // With OnFailure the kubelet would restart a failed app beside a sidecar that has already left
            // (it exited 0, so it is not restarted), and with Always the app is never meant to finish.
            throw new InjectionException($"{Annotations.ExitOnAppExit}: needs the pod's restartPolicy to be Never, not {spec["restartPolicy"]?.GetValue<string>() ?? "Always"}: a restarted app would find its sidecar gone");
        }

        var result = (JsonObject)pod.DeepClone();
        var newMetadata = Object(result, "metadata");
        var newAnnotations = Object(newMetadata, "annotations");
        var newSpec = (JsonObject)result["spec"]!;

        var probers = rewriteProbes ? ProbeRewriter.Rewrite((JsonArray)newSpec["containers"]!) : null;
        if (exitOnAppExit)
        {
            // The sidecar can only see the app's processes if the pod's containers share one PID namespace.
            newSpec["shareProcessNamespace"] = true;
        }

        var sidecar = Sidecar(native, hold && !native, resources, memoryLimit, gcPercent, workload, target.Namespace, probers, exitOnAppExit, podOverride);
        var init = InitContainer(capture);
        var initContainers = newSpec["initContainers"] as JsonArray ?? [];
        newSpec.Remove("initContainers");
        var orderedInit = new JsonArray { init };
        if (native)
        {
            orderedInit.Add(sidecar);
        }

        foreach (var c in initContainers.ToList())
        {
            initContainers.Remove(c);
            orderedInit.Add(c);
        }

        newSpec["initContainers"] = orderedInit;
        if (!native)
        {
            ((JsonArray)newSpec["containers"]!).Insert(0, sidecar);
        }

        var volumes = newSpec["volumes"] as JsonArray;
        if (volumes is null)
        {
            volumes = [];
            newSpec["volumes"] = volumes;
        }

        foreach (var volume in Volumes())
        {
            volumes.Add(volume);
        }

        newAnnotations[Annotations.Bootstrap] = Bootstrap(workload, target.Namespace, serviceAccount, labels, app, drain);
        newAnnotations[Annotations.Status] = JsonSerializer.Serialize(new StatusAnnotation(
            native ? [InitContainerName, SidecarContainerName] : [InitContainerName],
            native ? [] : [SidecarContainerName],
            VolumeNames), InjectionJsonContext.Default.StatusAnnotation);

        // An app exposing its own metrics keeps its scrape annotations; the sidecar's are added otherwise.
        if (!newAnnotations.ContainsKey("prometheus.io/scrape"))
        {
            newAnnotations["prometheus.io/scrape"] = "true";
            newAnnotations["prometheus.io/port"] = StatsPort.ToString(CultureInfo.InvariantCulture);
            newAnnotations["prometheus.io/path"] = "/stats/prometheus";
        }

        return new InjectionResult(InjectionOutcome.Injected, result, native ? "injected (native sidecar)" : "injected");
    }

    /// <summary>The capture a pod's annotations ask for; the same settings become meshproxy-init's arguments.</summary>
    public static CaptureSettings Capture(IReadOnlyDictionary<string, string> annotations, int? appPort)
    {
        var settings = new CaptureSettings
        {
            // Every inbound port would all land on the one app port the sidecar forwards to; so by
            // default only that port is captured (none if the pod declares none, as batch jobs often do).
            IncludeInboundPorts = appPort is { } p ? [p] : [],
        };
        try
        {
            if (annotations.TryGetValue(Annotations.IncludeInboundPorts, out var includeIn))
            {
                settings = settings with { IncludeInboundPorts = includeIn.Trim() == "*" ? null : CaptureSettings.ParsePorts(Annotations.IncludeInboundPorts, includeIn) };
            }

            if (annotations.TryGetValue(Annotations.ExcludeInboundPorts, out var excludeIn))
            {
                settings = settings with { ExcludeInboundPorts = CaptureSettings.ParsePorts(Annotations.ExcludeInboundPorts, excludeIn) };
            }

            if (annotations.TryGetValue(Annotations.ExcludeOutboundPorts, out var excludeOut))
            {
                settings = settings with { ExcludeOutboundPorts = CaptureSettings.ParsePorts(Annotations.ExcludeOutboundPorts, excludeOut) };
            }

            if (annotations.TryGetValue(Annotations.ExcludeOutboundIPRanges, out var excludeRanges))
            {
                settings = settings with { ExcludeOutboundIPRanges = CaptureSettings.ParseRanges(Annotations.ExcludeOutboundIPRanges, excludeRanges) };
            }

            if (annotations.TryGetValue(Annotations.IncludeOutboundIPRanges, out var includeRanges))
            {
                settings = settings with { IncludeOutboundIPRanges = includeRanges.Trim() == "*" ? null : CaptureSettings.ParseRanges(Annotations.IncludeOutboundIPRanges, includeRanges) };
            }
        }
        catch (CaptureSettingsException ex)
        {
            throw new InjectionException(ex.Message);
        }

        return settings;
    }

    private JsonObject InitContainer(CaptureSettings capture) => new()
    {
        ["name"] = InitContainerName,
        ["image"] = options.InitImage,
        ["imagePullPolicy"] = options.ImagePullPolicy,
        ["args"] = Strings(capture.ToInitArgs()),
        ["resources"] = new JsonObject
        {
            ["requests"] = new JsonObject { ["cpu"] = "10m", ["memory"] = "32Mi" },
            ["limits"] = new JsonObject { ["cpu"] = "500m", ["memory"] = "96Mi" },
        },
        // iptables needs root inside the pod's network namespace, and NET_ADMIN/NET_RAW there only.
        ["securityContext"] = new JsonObject
        {
            ["runAsUser"] = 0,
            ["runAsGroup"] = 0,
            ["runAsNonRoot"] = false,
            ["privileged"] = false,
            ["allowPrivilegeEscalation"] = false,
            ["readOnlyRootFilesystem"] = true,
            ["capabilities"] = new JsonObject { ["add"] = Strings(["NET_ADMIN", "NET_RAW"]), ["drop"] = Strings(["ALL"]) },
        },
    };

    private JsonObject Sidecar(
        bool native, bool hold, JsonObject resources, decimal? memoryLimit, int gcPercent, string workload, string ns, JsonObject? probers, bool exitOnAppExit,
        SidecarOverride? podOverride)
    {
        var env = new JsonArray
        {
            FieldEnv("POD_NAME", "metadata.name"),
            FieldEnv("POD_NAMESPACE", "metadata.namespace"),
            FieldEnv("POD_IP", "status.podIP"),
            FieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            Env(SidecarEnvironment.Workload, workload),
            Env(SidecarEnvironment.Namespace, ns),
            Env(SidecarEnvironment.ControlPlane, options.ControlPlaneAddress),
            Env(SidecarEnvironment.Config, $"{PodInfoDirectory}/bootstrap.yaml"),
        };
        if (memoryLimit is { } limit && gcPercent > 0)
        {
            // .NET reads GC settings from the environment as hexadecimal, and without "0x": the JIT runtime
            // accepts the prefix, but the Native AOT runtime (the sidecar as it ships) ignores such a value
            // without a word (benchmarks/RESULTS.md, "GC settings of the sidecar").
            var heap = (long)(limit * gcPercent / 100m);
            env.Add(Env("DOTNET_GCHeapHardLimit", heap.ToString("X", CultureInfo.InvariantCulture)));

            // With a hard limit, the concurrent GC: under the build's non-concurrent GC the .NET 10 runtime crashes
            // (SIGSEGV) when the heap nears its limit, a GC bug (dotnet/runtime#129681); the concurrent GC never did,
            // and measured no larger (benchmarks/RESULTS.md, "The 32 MiB heap-limit crash").
            env.Add(Env("DOTNET_gcConcurrent", "1"));
        }

        if (options.GcGen0SizeBytes > 0)
        {
            env.Add(Env("DOTNET_GCgen0size", options.GcGen0SizeBytes.ToString("X", CultureInfo.InvariantCulture)));
        }

        if (probers is { Count: > 0 })
        {
            env.Add(Env(SidecarEnvironment.AppProbers, probers.ToJsonString()));
        }

        if (exitOnAppExit)
        {
            env.Add(Env(SidecarEnvironment.ExitOnAppExit, "true"));
        }

        if (podOverride is not null)
        {
            env.Add(Env(SidecarEnvironment.ProxyConfig, podOverride.ToText()));
        }

        var container = new JsonObject
        {
            ["name"] = SidecarContainerName,
            ["image"] = options.SidecarImage,
            ["imagePullPolicy"] = options.ImagePullPolicy,
        };
        if (native)
        {
            container["restartPolicy"] = "Always";
        }

        container["ports"] = new JsonArray { new JsonObject { ["name"] = "mesh-stats", ["containerPort"] = StatsPort, ["protocol"] = "TCP" } };
        container["env"] = env;
        container["resources"] = resources;
        container["securityContext"] = new JsonObject
        {
            ["runAsUser"] = CaptureSettings.DefaultProxyUid,
            ["runAsGroup"] = CaptureSettings.DefaultProxyUid,
            ["runAsNonRoot"] = true,
            ["privileged"] = false,
            ["allowPrivilegeEscalation"] = false,
            ["readOnlyRootFilesystem"] = true,
            ["capabilities"] = new JsonObject { ["drop"] = Strings(["ALL"]) },
        };
        // A native sidecar's startup probe gates every container after it; a classic one's gates nothing,
        // so the app is held by the postStart hook instead (the kubelet starts the next container only
        // once a container's postStart returns).
        container["startupProbe"] = Probe(periodSeconds: 1, failureThreshold: 600);
        container["readinessProbe"] = Probe(periodSeconds: 15, failureThreshold: 4);
        if (hold)
        {
            container["lifecycle"] = new JsonObject { ["postStart"] = new JsonObject { ["exec"] = new JsonObject { ["command"] = Strings(WaitCommand) } } };
        }

        container["volumeMounts"] = new JsonArray
        {
            Mount(TokenVolume, TokenDirectory, readOnly: true),
            Mount(CertsVolume, CertsDirectory, readOnly: false),
            Mount(SnapshotVolume, SnapshotDirectory, readOnly: false),
            Mount(PodInfoVolume, PodInfoDirectory, readOnly: true),
            Mount(TrustBundleVolume, SidecarEnvironment.TrustBundleDirectory, readOnly: true),
        };
        return container;
    }

    private JsonObject[] Volumes() =>
    [
        new JsonObject
        {
            ["name"] = TokenVolume,
            ["projected"] = new JsonObject
            {
                ["sources"] = new JsonArray
                {
                    new JsonObject
                    {
                        ["serviceAccountToken"] = new JsonObject { ["audience"] = options.TokenAudience, ["expirationSeconds"] = 43200, ["path"] = "token" },
                    },
                },
            },
        },
        new JsonObject { ["name"] = CertsVolume, ["emptyDir"] = new JsonObject { ["medium"] = "Memory" } },
        new JsonObject { ["name"] = SnapshotVolume, ["emptyDir"] = new JsonObject { ["medium"] = "Memory" } },
        new JsonObject
        {
            ["name"] = PodInfoVolume,
            ["downwardAPI"] = new JsonObject
            {
                ["items"] = new JsonArray
                {
                    new JsonObject { ["path"] = "bootstrap.yaml", ["fieldRef"] = new JsonObject { ["fieldPath"] = $"metadata.annotations['{Annotations.Bootstrap}']" } },
                    new JsonObject { ["path"] = "labels", ["fieldRef"] = new JsonObject { ["fieldPath"] = "metadata.labels" } },
                },
            },
        },
        // The control plane keeps this ConfigMap in every meshed namespace; until it exists the kubelet holds the pod
        // in ContainerCreating and retries the mount (not optional: a sidecar without caFile can trust nothing).
        new JsonObject
        {
            ["name"] = TrustBundleVolume,
            ["configMap"] = new JsonObject
            {
                ["name"] = SidecarEnvironment.TrustBundleConfigMap,
                ["items"] = new JsonArray { new JsonObject { ["key"] = SidecarEnvironment.TrustBundleKey, ["path"] = SidecarEnvironment.TrustBundleKey } },
            },
        },
    ];

    private JsonObject Resources(IReadOnlyDictionary<string, string> annotations, out decimal? memoryLimit)
    {
        var requests = new JsonObject();
        var limits = new JsonObject();
        Set(requests, "cpu", Annotations.ProxyCpu, options.CpuRequest, out _);
        Set(requests, "memory", Annotations.ProxyMemory, options.MemoryRequest, out _);
        Set(limits, "cpu", Annotations.ProxyCpuLimit, options.CpuLimit, out _);
        Set(limits, "memory", Annotations.ProxyMemoryLimit, options.MemoryLimit, out memoryLimit);
        var resources = new JsonObject { ["requests"] = requests };
        if (limits.Count > 0)
        {
            resources["limits"] = limits;
        }

        return resources;

        void Set(JsonObject target, string name, string annotation, string fallback, out decimal? parsed)
        {
            var value = annotations.GetValueOrDefault(annotation) ?? fallback;
            parsed = null;
            if (value.Length == 0)
            {
                return;
            }

            if (!Quantity.TryParse(value, out var amount) || amount == 0)
            {
                throw new InjectionException($"{annotation}: '{value}' is not a positive Kubernetes quantity such as 100m, 128Mi or 1Gi");
            }

            parsed = amount;
            target[name] = value;
        }
    }

    /// <summary>Istio's port-name prefixes of protocols that are not HTTP (as the control plane reads a Service port's name).</summary>
    private static readonly string[] TcpPortNames = ["tcp", "mongo", "mysql", "redis"];

    /// <summary>Whether the pod's <see cref="Annotations.OpaquePorts"/> (comma-separated port numbers) lists <paramref name="port"/>.</summary>
    private static bool IsOpaque(Dictionary<string, string> annotations, int port)
    {
        if (!annotations.TryGetValue(Annotations.OpaquePorts, out var list))
        {
            return false;
        }

        // The whole list is checked, not just up to the app port: a typo elsewhere in it is still the pod's mistake.
        var listed = false;
        foreach (var item in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out var p) || p is < 1 or > 65535)
            {
                throw new InjectionException($"{Annotations.OpaquePorts}: '{item}' is not a port (1-65535)");
            }

            listed |= p == port;
        }

        return listed;
    }

    private static (int Port, string Protocol)? AppPort(JsonArray containers, Dictionary<string, string> annotations)
    {
        string? portName = null;
        int? port = null;
        if (annotations.TryGetValue(Annotations.AppPort, out var text))
        {
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var p) || p is < 1 or > 65535 || CaptureSettings.SidecarPorts.Contains(p))
            {
                throw new InjectionException($"{Annotations.AppPort}: '{text}' is not a port (1-65535) the sidecar does not use itself");
            }

            port = p;
        }
        else
        {
            var first = containers.OfType<JsonObject>()
                .SelectMany(c => c["ports"] as JsonArray ?? [])
                .OfType<JsonObject>()
                .FirstOrDefault(p => (p["protocol"]?.GetValue<string>() ?? "TCP") == "TCP" && p["containerPort"] is not null);
            if (first is not null)
            {
                // A number however it was built (parsed JSON, or YAML read as a long).
                port = first["containerPort"] is JsonValue v && v.GetValueKind() == JsonValueKind.Number &&
                       int.TryParse(v.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is > 0 and <= 65535
                    ? p
                    : throw new InjectionException($"containerPort {first["containerPort"]!.ToJsonString()} is not a port (1-65535)");
                portName = first["name"]?.GetValue<string>();
            }
        }

        if (port is null)
        {
            return null;
        }

        // Istio's convention: a port name's prefix says its protocol. A port listed as opaque is TCP whatever its name
        // says, as the control plane reads the same annotation on a Service: the inbound sidecar then takes plaintext
        // to it (PERMISSIVE, DISABLE) as a byte stream rather than as HTTP.
        var protocol = annotations.GetValueOrDefault(Annotations.AppProtocol)?.ToUpperInvariant()
            ?? (IsOpaque(annotations, port.Value) ? "TCP"
                : portName?.StartsWith("grpc", StringComparison.OrdinalIgnoreCase) == true ? "GRPC"
                : portName?.StartsWith("http2", StringComparison.OrdinalIgnoreCase) == true || portName?.StartsWith("h2c", StringComparison.OrdinalIgnoreCase) == true ? "HTTP2"
                : TcpPortNames.Any(n => portName?.StartsWith(n, StringComparison.OrdinalIgnoreCase) == true) ? "TCP"
                : "HTTP");
        if (!SidecarOverrideParser.AppProtocolNames.Contains(protocol, StringComparer.Ordinal))
        {
            throw new InjectionException($"{Annotations.AppProtocol}: '{protocol}' must be HTTP, HTTP2, GRPC or TCP");
        }

        return (port.Value, protocol);
    }

    /// <summary>
    /// The pod's <see cref="Annotations.ProxyConfig"/>, read as the sidecar will read it, less the fields a specific
    /// annotation sets (those win); null when there is none or nothing of it is left.
    /// The injector's rule for a port the pod lists in meshproxy.io/opaque-ports holds for the port the fragment moves
    /// the app to: TCP, unless the fragment or the specific annotation names a protocol.
    /// </summary>
    private static SidecarOverride? ProxyConfig(Dictionary<string, string> annotations)
    {
        if (!annotations.TryGetValue(Annotations.ProxyConfig, out var text))
        {
            return null;
        }

        var parsed = SidecarOverrideParser.Parse(text, Annotations.ProxyConfig);
        if (parsed.Override is not { } podOverride)
        {
            // Each error already reads "proxy.meshproxy.io/config:line: field: reason".
            throw new InjectionException(string.Join("; ", parsed.Errors));
        }

        podOverride = podOverride with
        {
            AppPort = annotations.ContainsKey(Annotations.AppPort) ? null : podOverride.AppPort,
            AppProtocol = annotations.ContainsKey(Annotations.AppProtocol) ? null : podOverride.AppProtocol,
            DrainDuration = annotations.ContainsKey(Annotations.DrainDuration) ? null : podOverride.DrainDuration,
        };
        if (podOverride is { AppPort: { } moved, AppProtocol: null } && !annotations.ContainsKey(Annotations.AppProtocol) && IsOpaque(annotations, moved))
        {
            podOverride = podOverride with { AppProtocol = Config.Resources.AppProtocol.Tcp };
        }
        return podOverride.IsEmpty ? null : podOverride;
    }

    /// <summary>
    /// The sidecar's bootstrap resource. JSON is YAML, and JSON-quoted strings carry any label value
    /// safely. A pod with no port gets a nominal app port: the schema requires one, and with no inbound
    /// capture nothing reaches it.
    /// </summary>
    private string Bootstrap(string workload, string ns, string serviceAccount, IReadOnlyDictionary<string, string> labels, (int Port, string Protocol)? app, string drain)
    {
        static string Q(string s) => JsonSerializer.Serialize(s, InjectionJsonContext.Default.String);
        var labelText = string.Join(", ", labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{Q(l.Key)}: {Q(l.Value)}"));
        var text = new StringBuilder();
        text.Append("apiVersion: meshproxy.io/v1alpha1\n");
        text.Append("kind: Sidecar\n");
        text.Append($"metadata: {{ name: {Q(workload)}, namespace: {Q(ns)} }}\n");
        text.Append("spec:\n");
        text.Append($"  workload: {{ name: {Q(workload)}, serviceAccount: {Q(serviceAccount)}, labels: {{ {labelText} }} }}\n");
        text.Append($"  app: {{ port: {app?.Port ?? NominalAppPort}, protocol: {app?.Protocol ?? "HTTP"} }}\n");
        text.Append($"  drainDuration: {drain}\n");
        // caFile only for https://: an http:// control plane (set by the operator on purpose) has no certificate to check.
        var caFile = options.ControlPlaneAddress.StartsWith("https://", StringComparison.OrdinalIgnoreCase) ? $", caFile: {Q(SidecarEnvironment.TrustBundleFile)}" : string.Empty;
        text.Append($"  controlPlane: {{ address: {Q(options.ControlPlaneAddress)}, tokenFile: {Q(TokenDirectory + "/token")}{caFile}, snapshotPath: {Q(SnapshotDirectory + "/snapshot.bin")} }}\n");
        return text.ToString();
    }

    private static string WorkloadName(JsonObject? metadata, Dictionary<string, string> labels, InjectionTarget target)
    {
        if (!string.IsNullOrEmpty(target.WorkloadName))
        {
            return target.WorkloadName;
        }

        // A controller's pods are created with generateName "<owner>-"; a Deployment's owner is its
        // ReplicaSet, "<deployment>-<pod-template-hash>".
        if (metadata?["generateName"]?.GetValue<string>() is { Length: > 0 } generated)
        {
            var name = generated.TrimEnd('-');
            if (labels.TryGetValue("pod-template-hash", out var hash) && name.EndsWith("-" + hash, StringComparison.Ordinal))
            {
                name = name[..^(hash.Length + 1)];
            }

            if (name.Length > 0)
            {
                return name;
            }
        }

        return metadata?["name"]?.GetValue<string>() is { Length: > 0 } podName
            ? podName
            : throw new InjectionException("the pod has neither metadata.name nor metadata.generateName to name its workload");
    }

    private static JsonObject Probe(int periodSeconds, int failureThreshold) => new()
    {
        ["httpGet"] = new JsonObject { ["path"] = "/ready", ["port"] = StatsPort },
        ["periodSeconds"] = periodSeconds,
        ["timeoutSeconds"] = 3,
        ["failureThreshold"] = failureThreshold,
    };

    private static JsonObject FieldEnv(string name, string fieldPath) => new()
    {
        ["name"] = name,
        ["valueFrom"] = new JsonObject { ["fieldRef"] = new JsonObject { ["fieldPath"] = fieldPath } },
    };

    private static JsonObject Env(string name, string value) => new() { ["name"] = name, ["value"] = value };

    private static JsonObject Mount(string volume, string path, bool readOnly)
    {
        var mount = new JsonObject { ["name"] = volume, ["mountPath"] = path };
        if (readOnly)
        {
            mount["readOnly"] = true;
        }

        return mount;
    }

    private static JsonArray Strings(IEnumerable<string> values) => new(values.Select(v => (JsonNode)JsonValue.Create(v)).ToArray());

    private static bool HasContainer(JsonObject pod, string name) =>
        ContainerLists.Any(list =>
            (pod["spec"]?[list] as JsonArray)?.OfType<JsonObject>().Any(c => c["name"]?.GetValueKind() == JsonValueKind.String && c["name"]!.GetValue<string>() == name) == true);

    private static Dictionary<string, string> StringMap(JsonObject? metadata, string name)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata?[name] is JsonObject values)
        {
            foreach (var (key, value) in values)
            {
                if (value?.GetValueKind() != JsonValueKind.String)
                {
                    throw new InjectionException($"metadata.{name}.{key}: must be a string");
                }

                map[key] = value.GetValue<string>();
            }
        }

        return map;
    }

    private static JsonObject Object(JsonObject parent, string name)
    {
        if (parent[name] is JsonObject existing)
        {
            return existing;
        }

        var created = new JsonObject();
        parent[name] = created;
        return created;
    }

    private static bool ParseBool(string source, string value) => value.Trim().ToLowerInvariant() switch
    {
        "true" => true,
        "false" => false,
        _ => throw new InjectionException($"{source}: '{value}' must be true or false"),
    };

    private static int ParsePercent(string value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var percent) && percent is >= 10 and <= 95
            ? percent
            : throw new InjectionException($"{Annotations.GcHeapHardLimitPercent}: '{value}' must be a whole percentage from 10 to 95");

    private static bool IsDuration(string value) => DurationPattern().IsMatch(value);

    [GeneratedRegex("^[0-9]{1,6}(ms|s|m|h)$")]
    private static partial Regex DurationPattern();
}

/// <summary>The status annotation: what was added, so tools (and a second injection) can tell.</summary>
internal sealed record StatusAnnotation(IReadOnlyList<string> InitContainers, IReadOnlyList<string> Containers, IReadOnlyList<string> Volumes);
