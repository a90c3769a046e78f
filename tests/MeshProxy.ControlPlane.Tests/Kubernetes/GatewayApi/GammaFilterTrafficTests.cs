using System.Net;
using System.Text.Json;
using MeshProxy.Config.Schema;
using MeshProxy.ControlPlane.Kubernetes;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Samples.App;
using Microsoft.AspNetCore.Builder;

namespace MeshProxy.ControlPlane.Tests.Kubernetes.GatewayApi;

/// <summary>
/// An HTTPRoute with filters on the fake API server, end to end: the control plane (in process) accepts it for its
/// Service parent, a real sidecar on its config stream applies it, and a real backend sees the rewritten path and the
/// set header while the caller gets the redirect and the added response header.
/// </summary>
public sealed class GammaFilterTrafficTests : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private FakeKubernetesApiServer _api = null!;
    private k8s.Kubernetes _client = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApiServer.StartAsync();
        _client = new k8s.Kubernetes(new k8s.KubernetesClientConfiguration { Host = _api.BaseUri.ToString() });
        _api.Apply(KubeJson.Namespace("shop"));
        foreach (var kind in ResourceSchemas.All)
        {
            _api.RegisterResource(ResourceSchemas.Group, ResourceSchemas.Version, kind.Plural, kind.Kind, namespaced: true);
        }

        _api.RegisterResource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", namespaced: true);
        _api.RegisterResource("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute", namespaced: true);
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _api.DisposeAsync();
    }

    [Fact]
    public async Task An_HTTPRoute_with_filters_is_accepted_and_changes_what_the_app_and_the_caller_see()
    {
        await using var app = SampleApp.Build("billing", 0, null, quiet: true);
        await app.StartAsync(Ct);
        _api.Apply($$$"""
            {"apiVersion":"meshproxy.io/v1alpha1","kind":"Service","metadata":{"name":"billing","namespace":"shop"},
             "spec":{"ports":[{"port":80}],"endpoints":[{"address":"127.0.0.1","port":{{{app.BoundPort()}}}}]}}
            """);
        _api.Apply("""
            {"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"billing-filters","namespace":"shop","generation":2},
             "spec":{"parentRefs":[{"group":"","kind":"Service","name":"billing","port":80}],
                     "rules":[
                       {"matches":[{"path":{"type":"PathPrefix","value":"/legacy"},"queryParams":[{"name":"v","value":"2"}]}],
                        "filters":[{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/"}}},
                                   {"type":"RequestHeaderModifier","requestHeaderModifier":{"set":[{"name":"X-Env","value":"prod"}]}},
                                   {"type":"ResponseHeaderModifier","responseHeaderModifier":{"add":[{"name":"X-Route","value":"gamma"}]}}],
                        "backendRefs":[{"name":"billing","port":80}]},
                       {"matches":[{"path":{"type":"PathPrefix","value":"/old"}}],
                        "filters":[{"type":"RequestRedirect","requestRedirect":{"scheme":"https","hostname":"shop.example","statusCode":301}}]},
                       {"backendRefs":[{"name":"billing","port":80}]}]}}
            """);

        await using var cp = await TestControlPlane.StartAsync(configure: o => o with
        {
            ConfigDirectory = string.Empty,
            Kubernetes = new KubernetesSourceOptions(),
            KubernetesClient = _client,
        });
        await using var sidecar = await StartSidecarAsync(cp);

        await TestControlPlane.EventuallyAsync(() => Task.FromResult(Parents() is ["billing Accepted:True ResolvedRefs:True"]), "the route is Accepted and resolved for its Service parent", TimeSpan.FromSeconds(30));
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(10) };
        await TestControlPlane.EventuallyAsync(async () => (await GetAsync(http, sidecar, "/old/x?y=1")).StatusCode == HttpStatusCode.MovedPermanently,
            "the sidecar applies the pushed route", TimeSpan.FromSeconds(30));

        using var redirect = await GetAsync(http, sidecar, "/old/x?y=1");
        Assert.Equal("https://shop.example/old/x?y=1", redirect.Headers.Location?.OriginalString);

        using var rewritten = await GetAsync(http, sidecar, "/legacy/hello?v=2");
        Assert.Equal(HttpStatusCode.OK, rewritten.StatusCode);
        var seen = JsonDocument.Parse(await rewritten.Content.ReadAsStringAsync(Ct)).RootElement;
        Assert.Equal("/hello", seen.GetProperty("path").GetString());
        Assert.Equal("prod", seen.GetProperty("headers").GetProperty("x-env").GetString());
        Assert.Equal("gamma", string.Join(',', rewritten.Headers.GetValues("x-route")));

        // Without the query parameter the last rule serves: nothing rewritten (the app has no /legacy/hello).
        using var unmatched = await GetAsync(http, sidecar, "/legacy/hello");
        Assert.Equal(HttpStatusCode.NotFound, unmatched.StatusCode);
        Assert.False(unmatched.Headers.Contains("x-route"));
    }

    /// <summary>A real sidecar in shop with its service-account token, its Pod known to the API server (the control plane serves a sidecar only then).</summary>
    private async Task<InProcessSidecar> StartSidecarAsync(TestControlPlane cp)
    {
        var dir = RepoPaths.NewTempDirectory();
        File.WriteAllText(Path.Combine(dir, "token"), _api.CreateServiceAccountToken("shop", "web") + "\n");
        var sidecar = await InProcessSidecar.StartAsync(InProcessSidecar.WriteBootstrap(dir, "web", "shop", cp.GrpcUri.ToString(), tokenFile: "token"));
        var pod = sidecar.Source.InstanceId[..^".shop".Length];
        _api.Apply(KubeJson.Pod("shop", pod, "127.0.0.1", serviceAccount: "web", app: "web"));
        return sidecar;
    }

    private static async Task<HttpResponseMessage> GetAsync(HttpClient http, InProcessSidecar sidecar, string pathAndQuery)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, pathAndQuery));
        request.Headers.Host = "billing";
        return await http.SendAsync(request, Ct);
    }

    /// <summary>"parent Type:Status..." of each entry of the route's status.parents.</summary>
    private string[] Parents() =>
        [.. (_api.Get("gateway.networking.k8s.io/v1", "HTTPRoute", "shop", "billing-filters")?["status"]?["parents"]?.AsArray() ?? []).Select(p =>
            $"{p!["parentRef"]!["name"]} " + string.Join(' ', p["conditions"]!.AsArray().Select(c => $"{c!["type"]}:{c["status"]}")))];
}
