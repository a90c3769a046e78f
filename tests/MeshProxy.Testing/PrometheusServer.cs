using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace MeshProxy.Testing;

/// <summary>
/// A real Prometheus server (tests/setup.sh installs /usr/bin/prometheus) with a given prometheus.yml, in a
/// temporary directory. It listens on 127.0.0.1:0 and the test reads the port it bound from its own
/// "Listening on" log line, so no port is chosen before the process binds it.
/// </summary>
public sealed partial class PrometheusServer : IAsyncDisposable
{
    private readonly ExternalProcess _process;
    private readonly DirectoryInfo _work;

    private PrometheusServer(ExternalProcess process, DirectoryInfo work, Uri address)
    {
        _process = process;
        _work = work;
        Address = address;
        Http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(5) };
    }

    /// <summary>http://127.0.0.1:port of the web API.</summary>
    public Uri Address { get; }

    /// <summary>A client for the web API (base address set).</summary>
    public HttpClient Http { get; }

    public bool HasExited => _process.HasExited;

    /// <summary>What the server has logged so far (info level and up).</summary>
    public string Log => _process.Output;

    /// <summary>Starts Prometheus with <paramref name="config"/> as its prometheus.yml and waits until its web API listens.</summary>
    public static async Task<PrometheusServer> StartAsync(string config, params string[] extraArgs)
    {
        var work = Directory.CreateTempSubdirectory("meshproxy-prom-");
        await File.WriteAllTextAsync(Path.Combine(work.FullName, "prometheus.yml"), config);
        var process = ExternalProcess.Start("/usr/bin/prometheus", [
            "--config.file=" + Path.Combine(work.FullName, "prometheus.yml"),
            "--storage.tsdb.path=" + Path.Combine(work.FullName, "data"),
            "--web.listen-address=127.0.0.1:0",
            "--log.level=info", // the "Listening on" line is at info
            .. extraArgs,
        ]);
        try
        {
            var line = await process.WaitForLineAsync("msg=\"Listening on\"", TimeSpan.FromSeconds(60));
            var bound = IPEndPoint.Parse(ListeningAddress().Match(line).Groups[1].Value);
            return new PrometheusServer(process, work, new Uri($"http://{bound}"));
        }
        catch
        {
            await process.DisposeAsync();
            work.Delete(recursive: true);
            throw;
        }
    }

    /// <summary>The result vector of an instant query, or empty while Prometheus has none (or does not answer yet).</summary>
    public async Task<JsonElement[]> QueryAsync(string promql, CancellationToken ct)
    {
        try
        {
            using var response = await Http.GetAsync("/api/v1/query?query=" + Uri.EscapeDataString(promql), ct);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                return [];
            }

            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
            return [.. json.RootElement.GetProperty("data").GetProperty("result").EnumerateArray().Select(e => e.Clone())];
        }
        catch (HttpRequestException)
        {
            return [];
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            return []; // the 5 s client timeout on a loaded machine: ask again
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _process.DisposeAsync();
        _work.Delete(recursive: true);
    }

    [GeneratedRegex("msg=\"Listening on\" address=(\\S+)")]
    private static partial Regex ListeningAddress();
}
