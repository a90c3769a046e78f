using System.Net;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Routing;

/// <summary>
/// A route's header changes, rewrites, redirects and query matches over real sockets: the app (a Kestrel backend)
/// sees the rewritten path, Host and headers; the caller sees the redirect's status and Location and the changed
/// response headers; a rule without changes passes everything as it came.
/// </summary>
public sealed class RouteFiltersTrafficTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static MeshYaml Mesh(int appPort) => new MeshYaml("store", 1).Service("billing", 80, "HTTP", appPort).Raw("""
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: { name: billing, namespace: test }
        spec:
          hosts: [billing]
          http:
            - name: moved
              match: [{ uri: { pathPrefix: /old } }]
              redirect: { replacePrefixMatch: /new, scheme: https, authority: shop.example, redirectCode: 302 }
            - name: here
              match: [{ uri: { exact: /here } }]
              redirect: { uri: /there }
            - name: legacy
              match:
                - uri: { pathPrefix: /legacy/ }
                  queryParams: { v: { exact: "2" } }
              rewrite: { replacePrefixMatch: /, authority: billing.internal }
              headers:
                request:
                  set: { x-env: prod }
                  add: { x-tag: mesh }
                  remove: [x-debug]
                response:
                  set: { cache-control: no-store }
                  add: { x-served-by: billing-route }
                  remove: [server]
              route: [{ destination: { host: billing } }]
            - name: whole
              match: [{ uri: { exact: /everything } }]
              rewrite: { replaceFullPath: /hello }
              route: [{ destination: { host: billing } }]
            - name: default
              route: [{ destination: { host: billing } }]
        """);

    [Fact]
    public async Task The_app_sees_the_rewritten_path_host_and_headers_and_the_caller_the_changed_response_headers()
    {
        await using var app = await Backend.StartAsync("billing");
        await using var sidecar = await TestSidecar.StartAsync(Mesh(app.Port));
        using var client = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false });

        using var response = await SendAsync(client, sidecar, "/legacy/hello?v=2", ("x-env", "dev"), ("x-tag", "app"), ("x-debug", "1"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var seen = await SeenAsync(response);
        Assert.Equal("/hello", seen.GetProperty("path").GetString());
        Assert.Equal("billing.internal", seen.GetProperty("host").GetString());
        var headers = seen.GetProperty("headers");
        Assert.Equal("prod", headers.GetProperty("x-env").GetString());
        Assert.Equal("app, mesh", headers.GetProperty("x-tag").GetString());
        Assert.False(headers.TryGetProperty("x-debug", out _));
        Assert.Equal("no-store", string.Join(',', response.Headers.GetValues("cache-control")));
        Assert.Equal("billing-route", string.Join(',', response.Headers.GetValues("x-served-by")));
        Assert.False(response.Headers.Contains("server"));

        // The same path without the query parameter falls to the rule without changes: nothing rewritten, nothing added.
        using var plain = await SendAsync(client, sidecar, "/hello?v=3", ("x-debug", "1"));
        Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        var untouched = await SeenAsync(plain);
        Assert.Equal("/hello", untouched.GetProperty("path").GetString());
        Assert.Equal("billing", untouched.GetProperty("host").GetString());
        Assert.Equal("1", untouched.GetProperty("headers").GetProperty("x-debug").GetString());
        Assert.False(plain.Headers.Contains("x-served-by"));
        Assert.True(plain.Headers.Contains("server")); // what the route removes is there without it
        using var unmatched = await SendAsync(client, sidecar, "/legacy/hello?v=3");
        Assert.Equal(HttpStatusCode.NotFound, unmatched.StatusCode); // not rewritten: the app has no /legacy/hello

        using var whole = await SendAsync(client, sidecar, "/everything?x=1");
        Assert.Equal("/hello", (await SeenAsync(whole)).GetProperty("path").GetString());
    }

    [Theory]
    [InlineData("/old/a/b?x=1", HttpStatusCode.Found, "https://shop.example/new/a/b?x=1")]
    [InlineData("/old", HttpStatusCode.Found, "https://shop.example/new")]
    [InlineData("/here?y=2", HttpStatusCode.MovedPermanently, "http://billing/there?y=2")] // Istio's default 301; the request's scheme and host, the service port 80 left out
    public async Task A_redirect_is_answered_by_the_sidecar_with_its_status_and_Location(string path, HttpStatusCode status, string location)
    {
        await using var app = await Backend.StartAsync("billing");
        await using var sidecar = await TestSidecar.StartAsync(Mesh(app.Port));
        using var client = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false });

        using var response = await SendAsync(client, sidecar, path);

        Assert.Equal(status, response.StatusCode);
        Assert.Equal(location, response.Headers.Location?.OriginalString);
        Assert.Equal(0, response.Content.Headers.ContentLength);
    }

    private static async Task<HttpResponseMessage> SendAsync(HttpClient client, TestSidecar sidecar, string pathAndQuery, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.OutboundUri, pathAndQuery));
        request.Headers.Host = "billing";
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        return await client.SendAsync(request, Ct);
    }

    private static async Task<JsonElement> SeenAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement;
}
