using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Grpc.Core;
using MeshProxy.Config.Resources;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Admin;

/// <summary>
/// The app's own kubelet probes, rewritten by the injector to <c>/app-health/&lt;container&gt;/livez|readyz|startupz</c>
/// on the stats port. Under STRICT mTLS the kubelet's plaintext probe of the app's port would be captured and
/// refused by the inbound listener (and a TCP probe would be answered by the sidecar, not the app); so the
/// kubelet asks the sidecar, and the sidecar performs the original probe against the app on 127.0.0.1 (its own
/// uid is exempt from capture) and answers with the app's verdict. A grpc probe becomes the standard health
/// check (grpc.health.v1.Health/Check) over h2c, made with Grpc.Net.Client (which the sidecar carries for its
/// control-plane stream) and the standard health stubs of Grpc.HealthCheck.
/// </summary>
internal sealed class AppProbes : IDisposable
{
    /// <summary>The environment variable the injector fills: a JSON object, path to the original probe.</summary>
    public const string EnvironmentVariable = SidecarEnvironment.AppProbers;

    public const string PathPrefix = SidecarEnvironment.AppHealthPathPrefix;

    /// <summary>Enough of the app's answer to explain a failure in the kubelet's event, never a whole page.</summary>
    private const int MaxBodyBytes = 10 * 1024;

    private readonly FrozenDictionary<string, AppProbe> _probes;
    private readonly HttpClient _client;
    private readonly ILogger _logger;

    public AppProbes(IReadOnlyDictionary<string, AppProbe> probes, ILogger<AppProbes> logger)
    {
        _probes = probes.ToFrozenDictionary(StringComparer.Ordinal);
        _logger = logger;
        _client = new HttpClient(new SocketsHttpHandler
        {
            // Like the kubelet: a redirect is not followed but counted a success, and an HTTPS probe checks only
            // that the app presents a certificate, not its chain or names (those are for its callers, not for 127.0.0.1).
            AllowAutoRedirect = false,
            UseProxy = false,
            UseCookies = false,
            PooledConnectionLifetime = TimeSpan.Zero,
            SslOptions = { RemoteCertificateValidationCallback = static (_, certificate, _, _) => certificate is not null },
        })
        {
            Timeout = Timeout.InfiniteTimeSpan, // each probe carries its own
        };
    }

    public int Count => _probes.Count;

    /// <summary>
    /// Reads <see cref="EnvironmentVariable"/>'s value; throws <see cref="FormatException"/> naming what is wrong.
    /// Ports are numbers here: the injector resolved named ports against the container's ports.
    /// </summary>
    public static IReadOnlyDictionary<string, AppProbe> Parse(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            throw new FormatException($"{EnvironmentVariable}: not JSON: {ex.Message}");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new FormatException($"{EnvironmentVariable}: must be a JSON object of '/app-health/...' paths to probes");
            }

            var probes = new Dictionary<string, AppProbe>(StringComparer.Ordinal);
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                var where = $"{EnvironmentVariable}[\"{entry.Name}\"]";
                if (!entry.Name.StartsWith(PathPrefix, StringComparison.Ordinal))
                {
                    throw new FormatException($"{where}: the path must start with {PathPrefix}");
                }

                probes[entry.Name] = ParseProbe(where, entry.Value);
            }

            return probes;
        }
    }

    /// <summary>Answers a kubelet probe of <c>/app-health/...</c> with the app's own verdict.</summary>
    public async Task HandleAsync(HttpContext context)
    {
        var response = context.Response;
        var path = context.Request.Path.Value ?? string.Empty;
        if (!_probes.TryGetValue(path, out var probe))
        {
            response.StatusCode = StatusCodes.Status404NotFound;
            await response.WriteAsync($"no app probe is configured at {path}\n");
            return;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        timeout.CancelAfter(probe.Timeout);
        try
        {
            if (probe.Http is { } http)
            {
                await HttpProbeAsync(context, probe, http, timeout.Token);
            }
            else if (probe.Grpc is { } grpc)
            {
                await GrpcProbeAsync(context, path, probe, grpc);
            }
            else
            {
                await TcpProbeAsync(probe.Port, timeout.Token);
                await response.WriteAsync($"connected to 127.0.0.1:{probe.Port}\n");
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or SocketException or IOException ||
                                   (ex is OperationCanceledException && !context.RequestAborted.IsCancellationRequested))
        {
            var reason = ex is OperationCanceledException ? $"no answer within {probe.Timeout.TotalSeconds:0.###}s" : ex.Message;
            _logger.AppProbeFailed(path, probe.Port, reason);
            if (!response.HasStarted)
            {
                // The kubelet counts any status outside 200-399 as a failure; 500 says the sidecar could not get an answer.
                response.StatusCode = StatusCodes.Status500InternalServerError;
                await response.WriteAsync($"probe of the app on 127.0.0.1:{probe.Port} failed: {reason}\n");
            }
        }
    }

    public void Dispose() => _client.Dispose();

    private async Task HttpProbeAsync(HttpContext context, AppProbe probe, HttpProbe http, CancellationToken cancellationToken)
    {
        var uri = new Uri($"{http.Scheme}://127.0.0.1:{probe.Port.ToString(CultureInfo.InvariantCulture)}{http.PathAndQuery}");
        using var request = new HttpRequestMessage(HttpMethod.Get, uri) { Version = HttpVersion.Version11 };
        request.Headers.ConnectionClose = true; // the kubelet opens a connection per probe; so do we
        if (context.Request.Headers.UserAgent is { Count: > 0 } userAgent)
        {
            request.Headers.TryAddWithoutValidation("User-Agent", (IEnumerable<string?>)userAgent);
        }

        foreach (var (name, value) in http.Headers)
        {
            if (string.Equals(name, "Host", StringComparison.OrdinalIgnoreCase))
            {
                request.Headers.Host = value;
            }
            else
            {
                request.Headers.Remove(name);
                request.Headers.TryAddWithoutValidation(name, value);
            }
        }

        using var answer = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        var status = (int)answer.StatusCode;

        // A redirect is a success to the kubelet, but a 3xx without its Location would be a broken answer: say 200.
        context.Response.StatusCode = status is >= 300 and < 400 ? StatusCodes.Status200OK : status;
        var buffer = new byte[MaxBodyBytes];
        await using var body = await answer.Content.ReadAsStreamAsync(cancellationToken);
        var read = 0;
        int n;
        while (read < buffer.Length && (n = await body.ReadAsync(buffer.AsMemory(read), cancellationToken)) > 0)
        {
            read += n;
        }

        await context.Response.Body.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
    }

    /// <summary>
    /// The kubelet's grpc probe: Check on a fresh h2c connection (the kubelet dials for each probe too, so an app
    /// that restarted is never judged by a stale connection), the probe's timeout sent as grpc-timeout and
    /// enforced here. Only SERVING passes; anything else is 503 with the reason, as the kubelet's event would say.
    /// </summary>
    private async Task GrpcProbeAsync(HttpContext context, string path, AppProbe probe, GrpcProbe grpc)
    {
        var response = context.Response;
        var target = $"127.0.0.1:{probe.Port.ToString(CultureInfo.InvariantCulture)}";
        var service = grpc.Service.Length == 0 ? "the server" : $"service '{grpc.Service}'";
        HealthCheckResponse.Types.ServingStatus status;
        try
        {
            using var channel = GrpcChannel.ForAddress($"http://{target}", new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero },
                DisposeHttpClient = true,
            });
            var answer = await new Health.HealthClient(channel).CheckAsync(
                new HealthCheckRequest { Service = grpc.Service },
                // The call's own deadline is the probe's timeout (not the caller's linked timer, which would end it as
                // CANCELLED rather than DEADLINE_EXCEEDED); only the kubelet hanging up cancels it.
                deadline: DateTime.UtcNow + probe.Timeout,
                cancellationToken: context.RequestAborted);
            status = answer.Status;
        }
        catch (RpcException) when (context.RequestAborted.IsCancellationRequested)
        {
            return; // the kubelet gave up first: nobody to answer
        }
        catch (RpcException ex)
        {
            var reason = ex.StatusCode switch
            {
                StatusCode.DeadlineExceeded => $"no answer within {probe.Timeout.TotalSeconds:0.###}s",
                StatusCode.NotFound => $"the app's health server does not know {service} (NOT_FOUND: {ex.Status.Detail})",
                _ => $"gRPC status {ex.StatusCode.ToString().ToUpperInvariant()} ({(int)ex.StatusCode}): {ex.Status.Detail}",
            };
            _logger.AppProbeFailed(path, probe.Port, reason);
            response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            await response.WriteAsync($"gRPC health check of {service} on {target} failed: {reason}\n");
            return;
        }

        // The app's own verdict, like an httpGet probe's status: passed on, not logged as the sidecar's failure.
        var name = status switch
        {
            HealthCheckResponse.Types.ServingStatus.Serving => "SERVING",
            HealthCheckResponse.Types.ServingStatus.NotServing => "NOT_SERVING",
            HealthCheckResponse.Types.ServingStatus.ServiceUnknown => "SERVICE_UNKNOWN",
            HealthCheckResponse.Types.ServingStatus.Unknown => "UNKNOWN",
            _ => $"an undefined status ({(int)status})",
        };
        response.StatusCode = status == HealthCheckResponse.Types.ServingStatus.Serving ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        await response.WriteAsync($"gRPC health of {service} on {target}: {name}\n");
    }

    private static async Task TcpProbeAsync(int port, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cancellationToken);
    }

    private static AppProbe ParseProbe(string where, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException($"{where}: must be an object with httpGet, tcpSocket or grpc");
        }

        var timeout = TimeSpan.FromSeconds(1); // the kubelet's default timeoutSeconds
        if (value.TryGetProperty("timeoutSeconds", out var t))
        {
            timeout = t.ValueKind == JsonValueKind.Number && t.TryGetInt32(out var seconds) && seconds > 0
                ? TimeSpan.FromSeconds(seconds)
                : throw new FormatException($"{where}.timeoutSeconds: must be a positive whole number");
        }

        if (value.TryGetProperty("httpGet", out var httpGet))
        {
            var port = Port($"{where}.httpGet", httpGet);
            var path = httpGet.TryGetProperty("path", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString()! : "/";
            if (!path.StartsWith('/'))
            {
                path = "/" + path;
            }

            var scheme = httpGet.TryGetProperty("scheme", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString()!.ToUpperInvariant() : "HTTP";
            if (scheme is not ("HTTP" or "HTTPS"))
            {
                throw new FormatException($"{where}.httpGet.scheme: '{s.GetString()}' must be HTTP or HTTPS");
            }

            var headers = new List<KeyValuePair<string, string>>();
            if (httpGet.TryGetProperty("httpHeaders", out var h))
            {
                if (h.ValueKind != JsonValueKind.Array)
                {
                    throw new FormatException($"{where}.httpGet.httpHeaders: must be a list of {{name, value}}");
                }

                foreach (var header in h.EnumerateArray())
                {
                    if (header.ValueKind != JsonValueKind.Object ||
                        !header.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString()!.Length == 0)
                    {
                        throw new FormatException($"{where}.httpGet.httpHeaders: each header needs a name");
                    }

                    var text = header.TryGetProperty("value", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : string.Empty;
                    headers.Add(new(name.GetString()!, text));
                }
            }

            return new AppProbe(port, timeout, new HttpProbe(scheme.ToLowerInvariant(), path, headers), Grpc: null);
        }

        if (value.TryGetProperty("tcpSocket", out var tcpSocket))
        {
            return new AppProbe(Port($"{where}.tcpSocket", tcpSocket), timeout, Http: null, Grpc: null);
        }

        if (value.TryGetProperty("grpc", out var grpc))
        {
            var port = Port($"{where}.grpc", grpc);
            var service = string.Empty; // Kubernetes' default: the server as a whole
            if (grpc.TryGetProperty("service", out var s))
            {
                service = s.ValueKind == JsonValueKind.String ? s.GetString()! : throw new FormatException($"{where}.grpc.service: must be a string");
            }

            return new AppProbe(port, timeout, Http: null, new GrpcProbe(service));
        }

        throw new FormatException($"{where}: must have httpGet, tcpSocket or grpc");
    }

    private static int Port(string where, JsonElement action) =>
        action.ValueKind == JsonValueKind.Object && action.TryGetProperty("port", out var port) &&
        port.ValueKind == JsonValueKind.Number && port.TryGetInt32(out var number) && number is > 0 and <= 65535
            ? number
            : throw new FormatException($"{where}.port: must be a port number (1-65535); named ports are resolved by the injector");
}

/// <summary>One original probe: the app's port on 127.0.0.1, its timeout, and for HTTP or gRPC what to ask (neither: TCP).</summary>
internal sealed record AppProbe(int Port, TimeSpan Timeout, HttpProbe? Http, GrpcProbe? Grpc);

/// <summary>An httpGet probe: scheme (http or https), path with its query, and the probe's own headers.</summary>
internal sealed record HttpProbe(string Scheme, string PathAndQuery, IReadOnlyList<KeyValuePair<string, string>> Headers);

/// <summary>A grpc probe: the service named in the health check, empty for the server as a whole.</summary>
internal sealed record GrpcProbe(string Service);

internal static partial class AppProbesLog
{
    [LoggerMessage(EventId = 800, Level = LogLevel.Warning, Message = "App probe {Path} of 127.0.0.1:{Port} failed: {Reason}")]
    public static partial void AppProbeFailed(this ILogger logger, string path, int port, string reason);
}
