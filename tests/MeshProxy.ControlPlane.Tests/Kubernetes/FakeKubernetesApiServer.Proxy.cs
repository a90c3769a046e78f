using System.Net;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>
/// TEST INFRASTRUCTURE: the API server's proxies to Services and Pods,
/// <c>GET /api/v1/namespaces/{ns}/services/[scheme:]{name}[:port]/proxy/{path}</c> and
/// <c>GET /api/v1/namespaces/{ns}/pods/{name}[:port]/proxy/{path}</c> (what <c>kubectl get --raw</c> and the client's
/// Connect*Proxy* calls use). The target is whatever a test registers with <see cref="SetProxyTarget"/> for that name
/// (the fake has no kube-proxy); as the API server answers: 404 when the Service or Pod does not exist, 503 "no endpoints
/// available" when a Service has none, the backend's status and body otherwise. Like the API server's, the proxy
/// does not verify a backend's TLS certificate.
/// </summary>
internal sealed partial class FakeKubernetesApiServer
{
    private static readonly HttpClient ProxyClient = new(new SocketsHttpHandler
    {
        // As the API server's proxy: any certificate the backend presents (the caller checks what it needs through other means).
        SslOptions = { RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null },
    })
    {
        Timeout = TimeSpan.FromSeconds(10),
    };

    private readonly Dictionary<string, Uri> _proxyTargets = new(StringComparer.Ordinal);

    /// <summary>
    /// Where the proxy for <paramref name="resource"/> ("services" or "pods") <paramref name="name"/> as it appears in
    /// the URL (e.g. "https:meshproxy-injector:443", "web-1:15020") sends; null: no endpoint.
    /// </summary>
    public void SetProxyTarget(string resource, string ns, string name, Uri? target)
    {
        lock (_lock)
        {
            if (target is null)
            {
                _proxyTargets.Remove($"{resource}/{ns}/{name}");
            }
            else
            {
                _proxyTargets[$"{resource}/{ns}/{name}"] = target;
            }
        }
    }

    private async Task<bool> TryServeProxyAsync(HttpContext context)
    {
        var parts = (context.Request.Path.Value ?? string.Empty).Trim('/').Split('/', 7);
        if (parts is not ["api", "v1", "namespaces", var ns, "services" or "pods", var name, var rest] || !(rest == "proxy" || rest.StartsWith("proxy/", StringComparison.Ordinal)))
        {
            return false;
        }

        var resource = parts[4];
        // Go's server decodes the path (an escaped '/' included) before routing; Kestrel leaves %2F escaped.
        var path = Uri.UnescapeDataString(rest.Length > "proxy".Length ? rest["proxy/".Length..] : string.Empty);
        var segments = name.Split(':');
        var objectName = resource == "services" && segments.Length == 3 ? segments[1] : segments[0];
        if (Get("v1", resource == "services" ? "Service" : "Pod", ns, objectName) is null)
        {
            await StatusAsync(context, 404, "NotFound", $"{resource} \"{objectName}\" not found");
            return true;
        }

        Uri? target;
        lock (_lock)
        {
            _proxyTargets.TryGetValue($"{resource}/{ns}/{name}", out target);
        }

        if (target is null)
        {
            await StatusAsync(context, 503, "ServiceUnavailable", resource == "services" ? $"no endpoints available for service \"{name}\"" : $"error trying to reach service: dial tcp: connect: connection refused");
            return true;
        }

        HttpResponseMessage response;
        try
        {
            response = await ProxyClient.GetAsync(new Uri(target, "/" + path + context.Request.QueryString));
        }
        catch (HttpRequestException ex)
        {
            await StatusAsync(context, 503, "ServiceUnavailable", $"error trying to reach service: {ex.Message}");
            return true;
        }

        using (response)
        {
            context.Response.StatusCode = (int)response.StatusCode;
            context.Response.ContentType = response.Content.Headers.ContentType?.ToString() ?? "text/plain";
            await context.Response.WriteAsync(await response.Content.ReadAsStringAsync());
        }

        return true;
    }
}
