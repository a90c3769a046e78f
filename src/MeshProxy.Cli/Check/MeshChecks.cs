using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;
using MeshProxy.Cli.Install;
using MeshProxy.Config.Resources;
using MeshProxy.Config.Schema;

namespace MeshProxy.Cli.Check;

/// <summary>One check's outcome: its line, and on failure why (what is wrong and where to look).</summary>
internal sealed record CheckResult(string Group, string Name, bool Ok, string Detail);

/// <summary>
/// What <c>meshproxy check</c> verifies, each as the API documents it: reachability (<c>/version</c>), permissions
/// (SelfSubjectAccessReview, as <c>kubectl auth can-i</c>), objects and their status, and — through the API server's
/// service and pod proxies, so no port-forward is needed — the injector's /healthz, every control-plane replica's
/// /debug/syncz (each knows only its own streams) and each sidecar's certificate gauge. Every name comes from <see cref="InstallOptions"/>: it checks what
/// <c>meshproxy install</c> with the same options made.
/// </summary>
internal sealed class MeshChecks(IKubernetes client, InstallOptions install, TimeProvider time)
{
    /// <summary>The trust-bundle ConfigMap the control plane keeps in every meshed namespace, and its key (SidecarEnvironment's).</summary>
    public const string TrustBundleConfigMap = SidecarEnvironment.TrustBundleConfigMap;

    public const string TrustBundleKey = SidecarEnvironment.TrustBundleKey;

    public const int MonitoringPort = ControlPlaneReplicas.MonitoringPort;

    public const int SidecarStatsPort = 15020;

    /// <summary>The resources install creates, by kind: what the installer must be allowed to create.</summary>
    private static readonly Dictionary<string, (string Group, string Resource)> Resources = new(StringComparer.Ordinal)
    {
        ["CustomResourceDefinition"] = ("apiextensions.k8s.io", "customresourcedefinitions"),
        ["Namespace"] = ("", "namespaces"),
        ["ServiceAccount"] = ("", "serviceaccounts"),
        ["ClusterRole"] = ("rbac.authorization.k8s.io", "clusterroles"),
        ["ClusterRoleBinding"] = ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ["Role"] = ("rbac.authorization.k8s.io", "roles"),
        ["RoleBinding"] = ("rbac.authorization.k8s.io", "rolebindings"),
        ["ConfigMap"] = ("", "configmaps"),
        ["Deployment"] = ("apps", "deployments"),
        ["Service"] = ("", "services"),
        ["PodDisruptionBudget"] = ("policy", "poddisruptionbudgets"),
        ["MutatingWebhookConfiguration"] = ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    };

    private X509Certificate2Collection? _caBundle;

    /// <summary>Runs the checks in order, handing each result over as it is known; stops after the API cannot be reached.</summary>
    public async Task<bool> RunAsync(bool preInstall, Action<CheckResult> report, CancellationToken cancellationToken)
    {
        var ok = true;
        async Task<bool> Run(string group, string name, Func<Task<string>> check)
        {
            CheckResult result;
            try
            {
                result = new CheckResult(group, name, true, await check());
            }
            catch (CheckFailed failed)
            {
                result = new CheckResult(group, name, false, failed.Message);
            }
            catch (HttpOperationException ex)
            {
                result = new CheckResult(group, name, false, $"the API server answered {(int)ex.Response.StatusCode} {ex.Response.ReasonPhrase}: {Shorten(ex.Response.Content)}");
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException or JsonException or k8s.Exceptions.KubernetesClientException)
            {
                result = new CheckResult(group, name, false, ex.Message);
            }

            ok &= result.Ok;
            report(result);
            return result.Ok;
        }

        if (!await Run("kubernetes-api", "can reach the Kubernetes API", ApiReachableAsync))
        {
            return false;
        }

        if (preInstall)
        {
            await Run("permissions", "can create every kind install applies", () => CanCreateAsync(cancellationToken));
            await Run("permissions", "can grant the control plane's RBAC rules", () => CanGrantAsync(cancellationToken));
            await Run("crds", "meshproxy.io CRDs are current or absent", () => CrdsAsync(preInstall: true, cancellationToken));
            return ok;
        }

        await Run("crds", "meshproxy.io CRDs are installed", () => CrdsAsync(preInstall: false, cancellationToken));
        await Run("control-plane", "control plane is ready", () => DeploymentReadyAsync(install.ControlPlane, cancellationToken));
        await Run("control-plane", "injector is ready", () => DeploymentReadyAsync(install.Injector, cancellationToken));
        var configured = await Run("webhook", "webhook is configured with the mesh CA's caBundle", () => WebhookConfiguredAsync(cancellationToken));
        await Run("webhook", "injector's serving certificate is valid for the caBundle", () => configured ? ServingCertificateAsync(cancellationToken) : Skipped());
        await Run("webhook", "injector is answering", () => InjectorAnsweringAsync(cancellationToken));
        var rows = new List<SyncRow>();
        var synced = await Run("data-plane", "every sidecar is synced", () => SidecarsSyncedAsync(rows, cancellationToken));
        await Run("data-plane", "every sidecar has a valid certificate", () => synced || rows.Count > 0 ? SidecarCertificatesAsync(rows, cancellationToken) : Skipped());
        await Run("data-plane", "trust bundles are consistent", () => configured ? TrustBundlesAsync(cancellationToken) : Skipped());
        return ok;

        async Task<string> ApiReachableAsync()
        {
            var version = await client.Version.GetCodeAsync(cancellationToken);
            return $"Kubernetes {version.GitVersion}";
        }
    }

    private static Task<string> Skipped() => throw new CheckFailed("not checked: a check it depends on failed");

    private async Task<string> CanCreateAsync(CancellationToken cancellationToken)
    {
        var kinds = Manifests.Files(install).SelectMany(f => f.Objects).Select(o => o["kind"]!.GetValue<string>()).Prepend("CustomResourceDefinition").Distinct();
        var denied = new List<string>();
        foreach (var kind in kinds)
        {
            var (group, resource) = Resources.TryGetValue(kind, out var r) ? r : throw new InvalidOperationException($"install renders {kind}, which check does not know");
            var namespaced = kind is not ("Namespace" or "ClusterRole" or "ClusterRoleBinding" or "MutatingWebhookConfiguration" or "CustomResourceDefinition");
            if (!await AllowedAsync("create", group, resource, namespaced ? install.Namespace : null, cancellationToken))
            {
                denied.Add(Named(resource, group) + (namespaced ? $" in {install.Namespace}" : string.Empty));
            }
        }

        return denied.Count == 0 ? string.Empty : throw new CheckFailed($"not allowed to create {string.Join(", ", denied)}");
    }

    /// <summary>
    /// RBAC refuses to create a role granting what its creator does not hold (unless it may escalate), so the
    /// installer must hold every permission of the control plane's roles.
    /// </summary>
    private async Task<string> CanGrantAsync(CancellationToken cancellationToken)
    {
        var missing = new List<string>();
        foreach (var role in Manifests.Files(install).SelectMany(f => f.Objects).Where(o => o["kind"]!.GetValue<string>() is "ClusterRole" or "Role"))
        {
            var ns = role["metadata"]!["namespace"]?.GetValue<string>();
            foreach (var rule in role["rules"]!.AsArray())
            {
                foreach (var group in Strings(rule!["apiGroups"]))
                {
                    foreach (var resource in Strings(rule["resources"]))
                    {
                        foreach (var verb in Strings(rule["verbs"]))
                        {
                            if (!await AllowedAsync(verb, group, resource, ns, cancellationToken))
                            {
                                missing.Add($"{verb} {Named(resource, group)}");
                            }
                        }
                    }
                }
            }
        }

        return missing.Count == 0 ? string.Empty : throw new CheckFailed($"not allowed to {string.Join(", ", missing.Distinct())}: RBAC will refuse roles that grant them");
    }

    private async Task<bool> AllowedAsync(string verb, string group, string resource, string? ns, CancellationToken cancellationToken)
    {
        var slash = resource.IndexOf('/', StringComparison.Ordinal);
        var review = await client.AuthorizationV1.CreateSelfSubjectAccessReviewAsync(
            new V1SelfSubjectAccessReview
            {
                Spec = new V1SelfSubjectAccessReviewSpec
                {
                    ResourceAttributes = new V1ResourceAttributes
                    {
                        Verb = verb,
                        Group = group,
                        Resource = slash < 0 ? resource : resource[..slash],
                        Subresource = slash < 0 ? null : resource[(slash + 1)..],
                        NamespaceProperty = ns,
                    },
                },
            },
            cancellationToken: cancellationToken);
        return review.Status?.Allowed == true;
    }

    private async Task<string> CrdsAsync(bool preInstall, CancellationToken cancellationToken)
    {
        var crds = await client.ApiextensionsV1.ListCustomResourceDefinitionAsync(cancellationToken: cancellationToken);
        var byName = crds.Items.ToDictionary(c => c.Metadata.Name, StringComparer.Ordinal);
        var missing = new List<string>();
        var stale = new List<string>();
        foreach (var kind in ResourceSchemas.All)
        {
            var name = $"{kind.Plural}.{ResourceSchemas.Group}";
            if (!byName.TryGetValue(name, out var crd))
            {
                missing.Add(name);
            }
            else if (crd.Spec?.Versions?.Any(v => v.Name == ResourceSchemas.Version && v.Served) != true)
            {
                stale.Add(name);
            }
        }

        if (stale.Count > 0)
        {
            throw new CheckFailed($"{string.Join(", ", stale)} do not serve {ResourceSchemas.Version}: apply `meshproxy crds`");
        }

        if (missing.Count == ResourceSchemas.All.Count && preInstall)
        {
            return "none yet: install creates them";
        }

        return missing.Count == 0
            ? $"{ResourceSchemas.All.Count} of {ResourceSchemas.All.Count}"
            : throw new CheckFailed($"missing {string.Join(", ", missing)}: apply `meshproxy crds`");
    }

    private async Task<string> DeploymentReadyAsync(string name, CancellationToken cancellationToken)
    {
        var deployment = await ReadOrNullAsync(() => client.AppsV1.ReadNamespacedDeploymentAsync(name, install.Namespace, cancellationToken: cancellationToken))
            ?? throw new CheckFailed($"Deployment {install.Namespace}/{name} does not exist: apply `meshproxy install`{RevisionFlag}");
        var wanted = deployment.Spec?.Replicas ?? 1;
        var ready = deployment.Status?.ReadyReplicas ?? 0;
        return ready >= wanted && wanted > 0
            ? $"{ready}/{wanted} replicas ready"
            : throw new CheckFailed($"{install.Namespace}/{name}: {ready}/{wanted} replicas ready (kubectl -n {install.Namespace} describe deployment {name})");
    }

    private async Task<string> WebhookConfiguredAsync(CancellationToken cancellationToken)
    {
        var configuration = await ReadOrNullAsync(() => client.AdmissionregistrationV1.ReadMutatingWebhookConfigurationAsync(install.WebhookConfiguration, cancellationToken: cancellationToken))
            ?? throw new CheckFailed($"MutatingWebhookConfiguration {install.WebhookConfiguration} does not exist: apply `meshproxy install`{RevisionFlag}");
        var ours = (configuration.Webhooks ?? []).Where(w => w.ClientConfig?.Service is { } s && s.Name == install.Injector && s.NamespaceProperty == install.Namespace).ToList();
        if (ours.Count == 0)
        {
            throw new CheckFailed($"no webhook of {install.WebhookConfiguration} calls Service {install.Namespace}/{install.Injector}");
        }

        var bundles = ours.Select(w => w.ClientConfig.CaBundle ?? []).ToList();
        if (bundles.Any(b => b.Length == 0))
        {
            throw new CheckFailed($"no caBundle on {string.Join(", ", ours.Where(w => (w.ClientConfig.CaBundle ?? []).Length == 0).Select(w => w.Name))}: the control plane fills it from the mesh CA (its log, events 172 and 174, says why it has not)");
        }

        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPem(Encoding.ASCII.GetString(bundles[0]));
        }
        catch (CryptographicException ex)
        {
            throw new CheckFailed($"the caBundle is not PEM certificates: {ex.Message}");
        }

        if (roots.Count == 0 || bundles.Any(b => !b.AsSpan().SequenceEqual(bundles[0])))
        {
            throw new CheckFailed("the webhooks' caBundles are empty or differ");
        }

        _caBundle = roots;
        return $"{ours.Count} webhooks, {roots.Count} root(s)";
    }

    private async Task<string> ServingCertificateAsync(CancellationToken cancellationToken)
    {
        var secret = await ReadOrNullAsync(() => client.CoreV1.ReadNamespacedSecretAsync(install.WebhookSecret, install.Namespace, cancellationToken: cancellationToken))
            ?? throw new CheckFailed($"Secret {install.Namespace}/{install.WebhookSecret} does not exist: the control plane writes it from the mesh CA (its log says why it has not)");
        if (secret.Data?.TryGetValue("tls.crt", out var pem) != true)
        {
            throw new CheckFailed($"Secret {install.Namespace}/{install.WebhookSecret} has no tls.crt");
        }

        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPem(Encoding.ASCII.GetString(pem!));
        }
        catch (CryptographicException ex)
        {
            throw new CheckFailed($"tls.crt is not a PEM certificate: {ex.Message}");
        }

        if (chain.Count == 0)
        {
            throw new CheckFailed("tls.crt holds no certificate");
        }

        var leaf = chain[0];
        if (!leaf.MatchesHostname(install.InjectorHost, allowWildcards: false, allowCommonName: false))
        {
            throw new CheckFailed($"the certificate does not name {install.InjectorHost}, which the API server dials");
        }

        var now = time.GetUtcNow();
        using var verifier = new X509Chain();
        verifier.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        verifier.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        verifier.ChainPolicy.VerificationTime = now.UtcDateTime;
        verifier.ChainPolicy.CustomTrustStore.AddRange(_caBundle!);
        verifier.ChainPolicy.ExtraStore.AddRange(chain);
        if (!verifier.Build(leaf))
        {
            var status = string.Join("; ", verifier.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct());
            throw new CheckFailed($"the API server would refuse it: it does not verify with the caBundle ({status})");
        }

        return $"{install.InjectorHost}, valid until {leaf.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm}Z";
    }

    private async Task<string> InjectorAnsweringAsync(CancellationToken cancellationToken)
    {
        var body = await client.CoreV1.ConnectGetNamespacedServiceProxyWithPathAsync($"https:{install.Injector}:443", install.Namespace, "healthz", cancellationToken: cancellationToken);
        return Shorten(await ControlPlaneReplicas.TextAsync(body));
    }

    /// <summary>Every replica's streams (each knows only its own: ControlPlaneReplicas asks them all, as proxy-status does).</summary>
    private async Task<string> SidecarsSyncedAsync(List<SyncRow> rows, CancellationToken cancellationToken)
    {
        var fleet = await ControlPlaneReplicas.ReadAsync(client, install, cancellationToken);
        rows.AddRange(fleet.Rows);
        if (fleet.Replicas.Count == 0)
        {
            throw new CheckFailed($"no running pod of {install.Namespace}/{install.ControlPlane} to ask");
        }

        if (fleet.Unreachable.Count > 0)
        {
            throw new CheckFailed($"cannot read /debug/syncz of {string.Join(", ", fleet.Unreachable)}: the sidecars it serves are unknown");
        }

        var behind = rows.Where(r => r.Status != "SYNCED").Select(r => $"{r.InstanceId} ({r.Status ?? "STALE"})").ToList();
        var across = fleet.Replicas.Count == 1 ? string.Empty : $" across {fleet.Replicas.Count} replicas";
        return behind.Count == 0
            ? rows.Count == 0 ? $"no sidecar connected{across}" : $"{rows.Count} sidecars{across}"
            : throw new CheckFailed($"{behind.Count} of {rows.Count} not synced: {string.Join(", ", behind.Take(10))} (meshproxy proxy-status)");
    }

    /// <summary>Each sidecar's own view: its meshproxy_certificate_expiry_seconds gauge, read through the API server's pod proxy.</summary>
    private async Task<string> SidecarCertificatesAsync(List<SyncRow> rows, CancellationToken cancellationToken)
    {
        var bad = new List<string>();
        var soonest = double.MaxValue;
        foreach (var row in rows)
        {
            var ns = row.Namespace;
            var instance = row.InstanceId;
            // The sidecar names itself <pod>.<namespace> (POD_NAME from the downward API).
            var pod = instance.EndsWith("." + ns, StringComparison.Ordinal) ? instance[..^(ns.Length + 1)] : instance;
            string metrics;
            try
            {
                metrics = await ControlPlaneReplicas.TextAsync(await client.CoreV1.ConnectGetNamespacedPodProxyWithPathAsync($"{pod}:{SidecarStatsPort}", ns, "stats/prometheus", cancellationToken: cancellationToken));
            }
            catch (HttpOperationException ex)
            {
                bad.Add($"{instance} (its stats port answered {(int)ex.Response.StatusCode})");
                continue;
            }

            var line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith("meshproxy_certificate_expiry_seconds ", StringComparison.Ordinal));
            if (line is null || !double.TryParse(line.Split(' ')[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds))
            {
                bad.Add($"{instance} (no certificate yet)");
            }
            else if (seconds <= 0)
            {
                bad.Add($"{instance} (expired {TimeSpan.FromSeconds(-seconds):g} ago)");
            }
            else
            {
                soonest = Math.Min(soonest, seconds);
            }
        }

        return bad.Count == 0
            ? rows.Count == 0 ? "no sidecar connected" : $"{rows.Count} sidecars, the first expiry in {TimeSpan.FromSeconds(soonest):d\\.hh\\:mm\\:ss}"
            : throw new CheckFailed(string.Join(", ", bad.Take(10)));
    }

    /// <summary>Every meshed namespace (labelled for injection or a revision) holds the bundle the webhook trusts: the CA's.</summary>
    private async Task<string> TrustBundlesAsync(CancellationToken cancellationToken)
    {
        var expected = _caBundle!.Select(c => c.Thumbprint).ToHashSet(StringComparer.Ordinal);
        var namespaces = await client.CoreV1.ListNamespaceAsync(cancellationToken: cancellationToken);
        var meshed = namespaces.Items
            .Where(n => n.Metadata.Labels is { } l && ((l.TryGetValue("meshproxy-injection", out var v) && v == "enabled") || l.ContainsKey(InstallOptions.RevisionLabel)))
            .Select(n => n.Metadata.Name)
            .ToList();
        var wrong = new List<string>();
        foreach (var ns in meshed)
        {
            var map = await ReadOrNullAsync(() => client.CoreV1.ReadNamespacedConfigMapAsync(TrustBundleConfigMap, ns, cancellationToken: cancellationToken));
            if (map?.Data?.TryGetValue(TrustBundleKey, out var pem) != true)
            {
                wrong.Add($"{ns} (no ConfigMap {TrustBundleConfigMap})");
                continue;
            }

            var roots = new X509Certificate2Collection();
            try
            {
                roots.ImportFromPem(pem!);
            }
            catch (CryptographicException)
            {
                wrong.Add($"{ns} (not PEM)");
                continue;
            }

            if (!roots.Select(c => c.Thumbprint).ToHashSet(StringComparer.Ordinal).SetEquals(expected))
            {
                wrong.Add($"{ns} (other roots than the mesh CA's)");
            }
        }

        return wrong.Count == 0
            ? $"{meshed.Count} meshed namespaces"
            : throw new CheckFailed($"{string.Join(", ", wrong.Take(10))}: the control plane keeps {TrustBundleConfigMap} equal to its CA's bundle (its log says why it has not)");
    }

    private string RevisionFlag => install.IsDefaultRevision ? string.Empty : $" --revision {install.Revision}";

    private static async Task<T?> ReadOrNullAsync<T>(Func<Task<T>> read)
        where T : class
    {
        try
        {
            return await read();
        }
        catch (HttpOperationException ex) when (ex.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    private static string Named(string resource, string group) => group.Length == 0 ? resource : $"{resource}.{group}";

    private static IEnumerable<string> Strings(JsonNode? node) => (node as JsonArray ?? []).Select(n => n!.GetValue<string>());

    private static string Shorten(string? text) => text is null ? string.Empty : text.Length <= 200 ? text.Trim() : text[..200].Trim() + "...";

    private sealed class CheckFailed(string message) : Exception(message);
}
