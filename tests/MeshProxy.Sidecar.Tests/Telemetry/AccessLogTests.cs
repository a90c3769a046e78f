using System.Diagnostics;
using System.Net;
using System.Text.Json;
using MeshProxy.Sidecar.Telemetry;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MeshProxy.Sidecar.Configuration;

namespace MeshProxy.Sidecar.Tests.Telemetry;

public sealed class AccessLogTests(TelemetryMesh mesh) : IClassFixture<TelemetryMesh>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Each_side_writes_one_json_line_per_request_with_envoys_fields()
    {
        var id = "access-log-" + Guid.NewGuid().ToString("N");
        using (var request = mesh.ToService("billing", HttpMethod.Post, "/echo?x=1"))
        {
            request.Headers.Add("x-request-id", id);
            request.Headers.UserAgent.ParseAdd("telemetry-test/1.0");
            request.Content = new ByteArrayContent(new byte[123]);
            using var response = await mesh.Client.SendAsync(request, Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var outbound = await WaitForLineAsync(mesh.StoreAccessLog, id);
        Assert.Equal("outbound", outbound.GetProperty("direction").GetString());
        Assert.Equal("POST", outbound.GetProperty("method").GetString());
        Assert.Equal("/echo?x=1", outbound.GetProperty("path").GetString());
        Assert.Equal("HTTP/1.1", outbound.GetProperty("protocol").GetString());
        Assert.Equal(200, outbound.GetProperty("response_code").GetInt32());
        Assert.Equal("-", outbound.GetProperty("response_flags").GetString());
        Assert.Equal(123, outbound.GetProperty("bytes_received").GetInt64());
        Assert.Equal(123, outbound.GetProperty("bytes_sent").GetInt64());
        Assert.True(outbound.GetProperty("duration").GetInt64() >= 0);
        Assert.Equal($"127.0.0.1:{mesh.Billing.Inbound.Port}", outbound.GetProperty("upstream_host").GetString());
        Assert.Equal("outbound|80||billing.test.svc.cluster.local", outbound.GetProperty("upstream_cluster").GetString());
        Assert.Equal("billing", outbound.GetProperty("authority").GetString());
        Assert.Equal("telemetry-test/1.0", outbound.GetProperty("user_agent").GetString());
        Assert.StartsWith("127.0.0.1:", outbound.GetProperty("downstream_remote_address").GetString(), StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.Null, outbound.GetProperty("peer_principal").ValueKind);
        var start = DateTime.Parse(outbound.GetProperty("start_time").GetString()!, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AdjustToUniversal);
        Assert.InRange(start, DateTime.UtcNow.AddMinutes(-1), DateTime.UtcNow.AddSeconds(1));

        var inbound = await WaitForLineAsync(mesh.BillingAccessLog, id);
        Assert.Equal("inbound", inbound.GetProperty("direction").GetString());
        Assert.Equal($"inbound|{mesh.BillingApp.Port}||", inbound.GetProperty("upstream_cluster").GetString());
        Assert.Equal($"127.0.0.1:{mesh.BillingApp.Port}", inbound.GetProperty("upstream_host").GetString());
        Assert.Equal(200, inbound.GetProperty("response_code").GetInt32());
    }

    [Fact]
    public async Task A_failed_request_is_logged_with_its_flag()
    {
        var id = "access-log-nr-" + Guid.NewGuid().ToString("N");
        using (var request = mesh.ToService("nowhere", HttpMethod.Get, "/missing"))
        {
            request.Headers.Add("x-request-id", id);
            using var response = await mesh.Client.SendAsync(request, Ct);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode); // REGISTRY_ONLY egress denial
        }

        var line = await WaitForLineAsync(mesh.StoreAccessLog, id);
        Assert.Equal("NR", line.GetProperty("response_flags").GetString());
        Assert.Equal(403, line.GetProperty("response_code").GetInt32());
        Assert.Equal(JsonValueKind.Null, line.GetProperty("upstream_cluster").ValueKind);
        Assert.True(line.GetProperty("bytes_sent").GetInt64() > 0);
    }

    [Fact]
    public async Task A_blocked_writer_drops_and_counts_lines_and_never_delays_requests()
    {
        // A FIFO nobody reads: opening it for writing blocks until a reader comes. The writer thread is
        // stuck; requests must go on at full speed, and what does not fit in the queue is counted.
        var dir = Directory.CreateTempSubdirectory("meshproxy-fifo");
        var fifo = Path.Combine(dir.FullName, "access.fifo");
        using (var mkfifo = Process.Start("mkfifo", [fifo]))
        {
            await mkfifo.WaitForExitAsync(Ct);
            Assert.Equal(0, mkfifo.ExitCode);
        }

        const int Capacity = 16;
        const int Requests = 60;
        await using var app = await Backend.StartAsync("billing");
        await using var sidecar = await TestSidecar.StartAsync(
            new MeshYaml("billing", app.Port).Raw(TelemetryMesh.MeshConfig(fifo)),
            services => services.AddSingleton(sp => new SidecarTelemetry(
                sp.GetRequiredService<SnapshotStore>(), sp.GetRequiredService<ILoggerFactory>(), accessLogCapacity: Capacity)));

        var elapsed = Stopwatch.StartNew();
        for (var i = 0; i < Requests; i++)
        {
            using var response = await mesh.Client.GetAsync(new Uri(sidecar.InboundUri, "/hello"), Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.True(elapsed.Elapsed < TimeSpan.FromSeconds(20), $"requests took {elapsed.Elapsed} with a blocked access log");
        var metrics = await Exposition.ScrapeAsync(mesh.Client, sidecar.Stats);
        var dropped = metrics.Sum("meshproxy_access_log_dropped_total");
        // The queue ends full, so no more than Requests - Capacity are dropped; the writer's
        // last batch before it blocked on its target can hold more than a queue's worth (it keeps draining while
        // requests arrive), so the lower bound is only "some": a writer that was not blocked would drop none.
        // The exact accounting is checked below: every line not counted as dropped arrives.
        Assert.InRange(dropped, 1, Requests - Capacity);

        // Unblock: every line that was not dropped arrives, whole.
        var lines = await ReadFifoAsync(fifo, Requests - (int)dropped);
        Assert.Equal(Requests - (int)dropped, lines.Count);
        Assert.All(lines, l => Assert.Equal(200, JsonDocument.Parse(l).RootElement.GetProperty("response_code").GetInt32()));
        dir.Delete(recursive: true);
    }

    [Fact]
    public async Task Access_log_off_writes_nothing()
    {
        var dir = Directory.CreateTempSubdirectory("meshproxy-nolog");
        var path = Path.Combine(dir.FullName, "access.log");
        await using var app = await Backend.StartAsync("billing");
        await using (var sidecar = await TestSidecar.StartAsync(new MeshYaml("billing", app.Port).Raw(TelemetryMesh.MeshConfig(path, accessLog: false))))
        {
            using var response = await mesh.Client.GetAsync(new Uri(sidecar.InboundUri, "/hello"), Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var metrics = await Exposition.ScrapeAsync(mesh.Client, sidecar.Stats);
            Assert.Equal(0, metrics.Sum("meshproxy_access_log_written_total"));
            Assert.Equal(1, metrics.Sum("istio_requests_total")); // metrics stay on
        }

        Assert.False(File.Exists(path));
        dir.Delete(recursive: true);
    }

    internal static async Task<JsonElement> WaitForLineAsync(string path, string requestId)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            if (File.Exists(path))
            {
                var lines = await File.ReadAllLinesAsync(path, Ct);
                for (var i = 0; i < lines.Length; i++)
                {
                    JsonElement json;
                    try
                    {
                        json = JsonDocument.Parse(lines[i]).RootElement;
                    }
                    catch (JsonException) when (i == lines.Length - 1)
                    {
                        break; // the writer is mid-line; every complete line must be JSON
                    }

                    if (json.GetProperty("x_request_id").GetString() == requestId)
                    {
                        return json;
                    }
                }
            }

            Assert.True(DateTime.UtcNow < deadline, $"no access log line for {requestId} in {path}");
            await Task.Delay(50, Ct);
        }
    }

    private static async Task<List<string>> ReadFifoAsync(string fifo, int expected)
    {
        var lines = new List<string>();
        var reader = Task.Run(() =>
        {
            using var stream = new FileStream(fifo, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
            using var text = new StreamReader(stream);
            while (lines.Count < expected && text.ReadLine() is { } line)
            {
                lock (lines)
                {
                    lines.Add(line);
                }
            }
        });
        await reader.WaitAsync(TimeSpan.FromSeconds(15), Ct);
        return lines;
    }
}
