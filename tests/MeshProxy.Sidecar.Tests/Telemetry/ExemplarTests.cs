using System.Net;
using MeshProxy.Sidecar.Tests.Infrastructure;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>
/// A sidecar with tracing on: the trace id of a sampled request becomes the exemplar of its
/// istio_request_duration_milliseconds bucket when Prometheus asks for OpenMetrics; an unsampled request
/// leaves none, and the text format carries none.
/// </summary>
public sealed class ExemplarTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_sampled_requests_trace_id_is_the_exemplar_of_its_duration_bucket_in_OpenMetrics_only()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        await using var app = await Backend.StartAsync("billing");
        var tracing = $"  tracing: {{ sampling: 100, propagation: w3c, otlpEndpoint: '{receiver.Endpoint}' }}";
        await using var store = await TestSidecar.StartAsync(new MeshYaml("store", 1)
            .Service("billing", 80, "HTTP", app.Port)
            .Raw(TelemetryMesh.MeshConfig("/dev/null", accessLog: false, tracing: tracing)));
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };

        var sampled = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        var unsampled = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        await GetAsync(client, store, $"00-{sampled}-00f067aa0ba902b7-01");
        await GetAsync(client, store, $"00-{unsampled}-00f067aa0ba902b7-00"); // the caller decided: not sampled

        var (openMetricsType, openMetrics) = await ScrapeAsync(client, store, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1");
        var (textType, text) = await ScrapeAsync(client, store, null);

        Assert.StartsWith("application/openmetrics-text; version=1.0.0", openMetricsType);
        Assert.StartsWith("text/plain; version=0.0.4", textType);
        var exemplar = Assert.Single(openMetrics.Split('\n'), l => l.Contains("# {", StringComparison.Ordinal));
        Assert.StartsWith("istio_request_duration_milliseconds_bucket{reporter=\"source\",", exemplar);
        Assert.Contains(" # {trace_id=\"" + sampled + "\"} ", exemplar);
        Assert.DoesNotContain(unsampled, openMetrics);
        Assert.EndsWith("# EOF\n", openMetrics);
        Assert.DoesNotContain("trace_id", text);
        Assert.Equal(2, Exposition.Parse(text).Sum("istio_requests_total", ("reporter", "source"), ("response_code", "200")));
    }

    private static async Task GetAsync(HttpClient client, TestSidecar store, string traceparent)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(store.OutboundUri, "/hello"));
        request.Headers.Host = "billing";
        request.Headers.Add("traceparent", traceparent);
        using var response = await client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    private static async Task<(string ContentType, string Body)> ScrapeAsync(HttpClient client, TestSidecar store, string? accept)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri($"http://{store.Stats}/stats/prometheus"));
        if (accept is not null)
        {
            request.Headers.TryAddWithoutValidation("Accept", accept);
        }

        using var response = await client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (response.Content.Headers.ContentType!.ToString(), await response.Content.ReadAsStringAsync(Ct));
    }
}
