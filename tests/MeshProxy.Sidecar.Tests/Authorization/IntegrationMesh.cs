using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using MeshProxy.Samples.App;
using MeshProxy.Sidecar.Tests.Identity;
using MeshProxy.Sidecar.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace MeshProxy.Sidecar.Tests.Authorization;

/// <summary>
/// The billing workload (an app that counts what it receives, behind a sidecar holding the policies)
/// and two callers, each an app-less sidecar with its own SVID from <see cref="MeshPki"/>: "store" and
/// "other". Callers go through their sidecar's outbound listener, which opens mTLS to billing's inbound.
/// </summary>
internal sealed class IntegrationMesh : IAsyncDisposable
{
    private readonly List<TestSidecar> _callers = [];

    private IntegrationMesh(ReceiptApp app)
    {
        App = app;
    }

    public ReceiptApp App { get; }

    public TestSidecar Billing { get; private set; } = null!;

    public LogCapture BillingLog { get; } = new();

    public TestSidecar Store { get; private set; } = null!;

    public TestSidecar Other { get; private set; } = null!;

    /// <summary>The name of the SVID "other" holds (spiffe://cluster.local/ns/test/sa/other).</summary>
    public string OtherSvid { get; private set; } = null!;

    public HttpClient Client { get; } = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false }) { Timeout = TimeSpan.FromSeconds(30) };

    /// <param name="billingServices">Services for billing's sidecar beyond the log capture (a JWKS cache on a fake clock, say).</param>
    /// <param name="meshConfig">More of the MeshConfig's spec (extensionProviders, say), as YAML lines indented by two.</param>
    public static async Task<IntegrationMesh> StartAsync(
        string policies, string mode = "STRICT", Action<Microsoft.Extensions.DependencyInjection.IServiceCollection>? billingServices = null, string? meshConfig = null)
    {
        var pki = MeshPki.Shared;
        var mesh = new IntegrationMesh(await ReceiptApp.StartAsync());
        var root = Directory.CreateTempSubdirectory("meshproxy-authz-").FullName;
        try
        {
            var billingYaml = new MeshYaml("billing", mesh.App.Port, tls: pki.WriteFiles(Path.Combine(root, "billing"), "billing")).Mtls(mode, meshConfig);
            if (policies.Length > 0)
            {
                billingYaml.Raw(policies);
            }

            mesh.Billing = await TestSidecar.StartAsync(billingYaml, services =>
            {
                mesh.BillingLog.Register(services);
                billingServices?.Invoke(services);
            });
            mesh.Store = await mesh.StartCallerAsync(root, "store", "store");
            mesh.OtherSvid = pki.FreshSvid("rootA", "other");
            mesh.Other = await mesh.StartCallerAsync(root, "other", mesh.OtherSvid);
            return mesh;
        }
        catch
        {
            await mesh.DisposeAsync();
            throw;
        }
    }

    /// <summary>A request to billing through <paramref name="caller"/>'s sidecar.</summary>
    public async Task<HttpResponseMessage> SendAsync(TestSidecar caller, HttpMethod method, string path, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, new Uri(caller.OutboundUri, path));
        request.Headers.Host = "billing";
        if (method == HttpMethod.Post)
        {
            request.Content = new StringContent("{\"amount\":100}", Encoding.UTF8, "application/json");
        }

        return await Client.SendAsync(request, ct);
    }

    /// <summary>
    /// Bytes on the wire, straight to billing's inbound port over mTLS with <paramref name="svid"/>'s
    /// certificate: what a workload that skips its own sidecar can send. Returns the status code and the
    /// whole response. HTTP clients would normalize the spellings under test; this does not.
    /// </summary>
    public async Task<(int Status, string Response)> SendRawAsync(string svid, string requestHead, CancellationToken ct)
    {
        var pki = MeshPki.Shared;
        using var certificate = X509Certificate2.CreateFromPemFile(pki.Cert(svid), pki.Key(svid));
        using var meshRoot = X509Certificate2.CreateFromPem(File.ReadAllText(pki.Cert("rootA")));
        var trust = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        trust.CustomTrustStore.Add(meshRoot);
        using var tcp = new System.Net.Sockets.TcpClient();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(15));
        await tcp.ConnectAsync(Billing.Inbound, timeout.Token);
        await using var tls = new SslStream(tcp.GetStream());
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "billing",
            ClientCertificates = [certificate],
            ApplicationProtocols = [SslApplicationProtocol.Http11],
            CertificateChainPolicy = trust,
            // The SVID names no DNS host; the chain to the mesh root is what matters here.
            RemoteCertificateValidationCallback = (_, _, _, errors) => (errors & ~SslPolicyErrors.RemoteCertificateNameMismatch) == SslPolicyErrors.None,
        }, timeout.Token);
        await tls.WriteAsync(Encoding.ASCII.GetBytes(requestHead), timeout.Token);
        using var reader = new StreamReader(tls, Encoding.ASCII);
        var response = await reader.ReadToEndAsync(timeout.Token);
        var status = response.Length >= 12 && int.TryParse(response.AsSpan(9, 3), out var code) ? code : 0;
        return (status, response);
    }

    public async Task<string> MetricsAsync(CancellationToken ct) =>
        await Client.GetStringAsync(new Uri($"http://{Billing.Stats}/metrics"), ct);

    /// <summary>The value of one meshproxy_authorization_decisions_total series, 0 when it does not exist.</summary>
    /// <summary>Sends a request to billing through <paramref name="caller"/>'s sidecar and checks the status it gets.</summary>
    public async Task ExpectAsync(TestSidecar caller, HttpMethod method, string path, HttpStatusCode expected, CancellationToken ct)
    {
        using var response = await SendAsync(caller, method, path, ct);
        Assert.Equal(expected, response.StatusCode);
    }

    public Task<double> DecisionsAsync(string action, string policy, CancellationToken ct) =>
        SampleAsync($"meshproxy_authorization_decisions_total{{action=\"{action}\",policy=\"{policy}\"}}", ct);

    /// <summary>meshproxy_authorization_audit_total{policy} on billing's stats port.</summary>
    public Task<double> AuditedAsync(string policy, CancellationToken ct) =>
        SampleAsync($"meshproxy_authorization_audit_total{{policy=\"{policy}\"}}", ct);

    /// <summary>The value of one series (name and labels as written) on billing's stats port; 0 when absent.</summary>
    public async Task<double> SampleAsync(string series, CancellationToken ct)
    {
        var prefix = series + " ";
        var line = (await MetricsAsync(ct)).Split('\n').FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[prefix.Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        foreach (var sidecar in _callers)
        {
            await sidecar.DisposeAsync();
        }

        if (Billing is not null)
        {
            await Billing.DisposeAsync();
        }

        await App.DisposeAsync();
    }

    private async Task<TestSidecar> StartCallerAsync(string root, string name, string svid)
    {
        var files = MeshPki.Shared.WriteFiles(Path.Combine(root, name), svid);
        var sidecar = await TestSidecar.StartAsync(
            new MeshYaml(name, 1, tls: files).MeshService("billing", 80, "HTTP", "billing", null, Billing.Inbound.Port));
        _callers.Add(sidecar);
        return sidecar;
    }
}

/// <summary>The app behind billing's sidecar: counts every request it receives and remembers its method, raw target, headers and body.</summary>
internal sealed class ReceiptApp : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _count;

    private ReceiptApp(WebApplication app)
    {
        _app = app;
    }

    public int Port { get; private set; }

    public int Count => Volatile.Read(ref _count);

    public ConcurrentQueue<string> Received { get; } = new();

    /// <summary>The headers of each request received, in order (names lowercased, copies joined by ',').</summary>
    public ConcurrentQueue<IReadOnlyDictionary<string, string>> ReceivedHeaders { get; } = new();

    /// <summary>The body of each request received, in order, read whole.</summary>
    public ConcurrentQueue<byte[]> ReceivedBodies { get; } = new();

    public static async Task<ReceiptApp> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var receipts = new ReceiptApp(app);
        app.Run(async context =>
        {
            var line = $"{context.Request.Method} {context.Features.Get<IHttpRequestFeature>()!.RawTarget}";
            receipts.Received.Enqueue(line);
            receipts.ReceivedHeaders.Enqueue(context.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString(), StringComparer.Ordinal));
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body, context.RequestAborted);
            receipts.ReceivedBodies.Enqueue(body.ToArray());
            Interlocked.Increment(ref receipts._count);
            await context.Response.WriteAsync("received " + line);
        });
        await app.StartAsync();
        receipts.Port = app.BoundPort();
        return receipts;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
