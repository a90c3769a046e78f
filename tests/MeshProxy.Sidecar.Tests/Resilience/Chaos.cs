using System.Net;
using System.Text;
using System.Text.Json;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Resilience;

/// <summary>A sidecar in front of chaos backends, and a client that calls service "svc" through it.</summary>
internal sealed class Chaos : IAsyncDisposable
{
    private readonly HttpClient _client;

    private Chaos(TestSidecar sidecar)
    {
        Sidecar = sidecar;
        _client = new HttpClient(new SocketsHttpHandler { UseProxy = false, MaxConnectionsPerServer = 64 }) { Timeout = TimeSpan.FromSeconds(10) };
    }

    public TestSidecar Sidecar { get; }

    /// <summary>Service "svc" on port 80 with <paramref name="endpointPorts"/>, plus any routes and policies as raw YAML.</summary>
    public static async Task<Chaos> StartAsync(int[] endpointPorts, string? extraYaml = null)
    {
        var yaml = new MeshYaml("client", ClosedPort.Next()).Service("svc", 80, "HTTP", endpointPorts);
        if (extraYaml is not null)
        {
            yaml.Raw(extraYaml);
        }

        return new Chaos(await TestSidecar.StartAsync(yaml));
    }

    /// <summary>Service "svc" on port 80 with endpoints of the given <c>weight</c>s, plus any routes and policies as raw YAML.</summary>
    public static async Task<Chaos> StartWeightedAsync((int Port, int Weight)[] endpoints, string? extraYaml = null)
    {
        var service = new StringBuilder("""
            apiVersion: meshproxy.io/v1alpha1
            kind: Service
            metadata: { name: svc, namespace: test }
            spec:
              ports: [{ port: 80, protocol: HTTP }]
              endpoints:

            """);
        foreach (var (port, weight) in endpoints)
        {
            service.Append($"    - {{ address: 127.0.0.1, port: {port}, weight: {weight} }}\n");
        }

        var yaml = new MeshYaml("client", ClosedPort.Next()).Raw(service.ToString());
        if (extraYaml is not null)
        {
            yaml.Raw(extraYaml);
        }

        return new Chaos(await TestSidecar.StartAsync(yaml));
    }

    /// <summary>Service "svc"'s DestinationPolicy with these <c>spec</c> fields (YAML flow maps, one per element), after a document separator.</summary>
    public static string Policy(params string[] fields) =>
        "\n---\napiVersion: meshproxy.io/v1alpha1\nkind: DestinationPolicy\nmetadata: { name: svc, namespace: test }\nspec:\n  host: svc\n" +
        string.Concat(fields.Select(f => "  " + f + "\n"));

    public static string Route(string retries, string? timeout = null) => $$"""
        apiVersion: meshproxy.io/v1alpha1
        kind: HttpRoute
        metadata: { name: svc, namespace: test }
        spec:
          hosts: [svc]
          http:
          - route: [{ destination: { host: svc } }]
            retries: {{retries}}
        {{(timeout is null ? "" : "    timeout: " + timeout)}}
        """;

    public async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, HttpContent? content = null, Action<HttpRequestMessage>? configure = null)
    {
        var request = new HttpRequestMessage(method, new Uri(Sidecar.OutboundUri, path)) { Content = content };
        request.Headers.Host = "svc";
        configure?.Invoke(request);
        return await _client.SendAsync(request);
    }

    public async Task<string> ConfigDumpAsync() =>
        await _client.GetStringAsync($"http://{Sidecar.Admin}/config_dump");

    /// <summary>Cluster "svc"'s resilience state in /config_dump: the object holding its counters and <c>endpoints</c>.</summary>
    public async Task<JsonElement> HealthAsync()
    {
        using var dump = JsonDocument.Parse(await ConfigDumpAsync());
        return FindHealth(dump.RootElement)?.Clone() ?? throw new InvalidOperationException("no cluster health for svc in /config_dump");
    }

    /// <summary>The first cluster resilience state (counters and a non-empty <c>endpoints</c>) in a /config_dump document.</summary>
    internal static JsonElement? FindHealth(JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Object)
        {
            if (e.TryGetProperty("endpoints", out var endpoints) && e.TryGetProperty("ejectionsTotal", out _) &&
                endpoints.ValueKind == JsonValueKind.Array && endpoints.GetArrayLength() > 0)
            {
                return e;
            }

            foreach (var p in e.EnumerateObject())
            {
                if (FindHealth(p.Value) is { } found)
                {
                    return found;
                }
            }
        }
        else if (e.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in e.EnumerateArray())
            {
                if (FindHealth(item) is { } found)
                {
                    return found;
                }
            }
        }

        return null;
    }

    /// <summary>The endpoints (address:port) of "svc" that /config_dump shows ejected now.</summary>
    public async Task<string[]> EjectedAsync() =>
        [.. (await HealthAsync()).GetProperty("endpoints").EnumerateArray()
            .Where(e => e.GetProperty("ejected").GetBoolean())
            .Select(e => e.GetProperty("endpoint").GetString()!)];

    public async Task<double> SuccessRateAsync(int requests, int concurrency, HttpMethod method)
    {
        var ok = 0;
        var next = -1;
        var workers = Enumerable.Range(0, concurrency).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) < requests)
            {
                using var response = await SendAsync(method, "/work");
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    Interlocked.Increment(ref ok);
                }
            }
        });
        await Task.WhenAll(workers);
        return (double)ok / requests;
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await Sidecar.DisposeAsync();
    }
}
