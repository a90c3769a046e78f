using System.Text.Json;
using System.Text.Json.Serialization;
using MeshProxy.ControlPlane.Discovery;
using MeshProxy.ControlPlane.Resources;
using MeshProxy.Metrics;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.ControlPlane.Monitoring;

/// <summary>
/// Port 15014: readiness, Prometheus metrics, and the debug views an operator (or `meshproxy
/// proxy-status`) reads. Nothing here changes state, so every path is GET-only.
/// </summary>
internal sealed class MonitoringEndpoints(ConnectionRegistry registry, IConfigSource directory, ControlPlaneMetrics metrics, Func<bool> ready, Kubernetes.KubernetesSource? kubernetes = null)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseUpper) },
    };

    public Task HandleAsync(HttpContext context)
    {
        if (!HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method))
        {
            return TextAsync(context, 405, "only GET is served here\n");
        }

        return context.Request.Path.Value switch
        {
            "/ready" => ready() ? TextAsync(context, 200, "ready\n" + KubernetesDetails()) : TextAsync(context, 503, "not ready\n"),
            "/metrics" => MetricsAsync(context),
            "/debug/syncz" => JsonAsync(context, Syncz()),
            "/debug/configz" => JsonAsync(context, Configz()),
            _ => TextAsync(context, 404, "not found: try /ready, /metrics, /debug/syncz, /debug/configz\n"),
        };
    }

    /// <summary>
    /// Still ready while the API server is away (the last known state serves, as the sidecars' own saved snapshots
    /// do), but it says so, one line per watched kind (the custom kinds too; one whose CRD is absent says so).
    /// </summary>
    private string KubernetesDetails()
    {
        if (kubernetes is null)
        {
            return string.Empty;
        }

        var text = new System.Text.StringBuilder();
        foreach (var health in kubernetes.Health)
        {
            text.Append("kubernetes ").Append(health.Resource).Append(": ");
            text.Append(health switch
            {
                { Connected: false } => $"API server unreachable since {health.DisconnectedSince:O} ({health.LastError}); serving the last known state",
                { NotServed: true } => "not served by the API server (CRD not installed): none read, checked again with backoff",
                _ => "watching",
            });
            text.Append('\n');
        }

        return text.ToString();
    }

    private List<SyncEntry> Syncz() => registry.All
        .OrderBy(c => c.Workload.Namespace, StringComparer.Ordinal)
        .ThenBy(c => c.InstanceId, StringComparer.Ordinal)
        .Select(c =>
        {
            var s = c.State;
            return new SyncEntry(
                c.InstanceId, c.Workload.Name, c.Workload.Namespace, c.Workload.ServiceAccount, c.Address, c.ProxyVersion,
                c.ConnectedAt, s.AckedVersion, s.SentVersion, s.SentNonce, s.SentAt, c.Status, s.LastNack, s.LastSeen);
        })
        .ToList();

    private object Configz()
    {
        var state = directory.Current;
        return new
        {
            directory = directory.Description,
            generation = state.Generation,
            resources = state.Resources.Select(r => new { key = r.Key, version = r.Version, source = r.Resource.Source.ToString() }),
            keptLastGood = state.KeptLastGood,
            heldBack = state.HeldBack.Select(h => new
            {
                kind = h.Refused.Resource.Kind,
                @namespace = h.Refused.Resource.Metadata.Namespace,
                name = h.Refused.Resource.Metadata.Name,
                version = h.Refused.Version,
                servingLastGood = h.ServingVersion,
                errors = h.Errors.Select(Diagnostic),
            }),
            invalidResources = state.InvalidResources,
            errors = state.Errors.Select(Diagnostic),
            warnings = state.Warnings.Select(Diagnostic),
        };
    }

    private static object Diagnostic(MeshProxy.Config.Parsing.ConfigDiagnostic d) =>
        new { file = d.File, line = d.Line, field = d.FieldPath, reason = d.Reason, text = d.ToString() };

    // The format follows Accept: OpenMetrics for Prometheus, the text format otherwise.
    private Task MetricsAsync(HttpContext context) => metrics.Registry.ServeAsync(context);

    private static Task JsonAsync(HttpContext context, object value)
    {
        context.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(context.Response.Body, value, Json, context.RequestAborted);
    }

    private static Task TextAsync(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(text);
    }
}

/// <summary>One row of /debug/syncz (camelCase JSON; `meshproxy proxy-status` reads it).</summary>
internal sealed record SyncEntry(
    string InstanceId,
    string Workload,
    string Namespace,
    string ServiceAccount,
    string Address,
    string ProxyVersion,
    DateTimeOffset ConnectedSince,
    string AckedVersion,
    string SentVersion,
    string SentNonce,
    DateTimeOffset? SentAt,
    SyncStatus Status,
    NackRecord? LastNack,
    DateTimeOffset LastSeen);
