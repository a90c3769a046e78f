using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.ControlPlane.Tests.Kubernetes;

/// <summary>TEST INFRASTRUCTURE: <c>GET /version</c>, the API server's build information (what <c>kubectl version</c> reads).</summary>
internal sealed partial class FakeKubernetesApiServer
{
    public const string GitVersion = "v1.29.0-fake";

    private async Task<bool> TryServeVersionAsync(HttpContext context)
    {
        if (context.Request.Path.Value?.TrimEnd('/') != "/version" || context.Request.Method != "GET")
        {
            return false;
        }

        await JsonAsync(context, 200, new JsonObject
        {
            ["major"] = "1",
            ["minor"] = "29",
            ["gitVersion"] = GitVersion,
            ["gitCommit"] = "0000000000000000000000000000000000000000",
            ["gitTreeState"] = "clean",
            ["buildDate"] = "2026-01-01T00:00:00Z",
            ["goVersion"] = "go1.21.5",
            ["compiler"] = "gc",
            ["platform"] = "linux/amd64",
        });
        return true;
    }
}
