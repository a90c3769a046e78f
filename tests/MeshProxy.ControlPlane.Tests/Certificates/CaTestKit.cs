using System.Diagnostics;
using System.Text.Json;
using MeshProxy.ControlPlane.Certificates;
using MeshProxy.ControlPlane.Hosting;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using MeshProxy.Identity.Bootstrap;

namespace MeshProxy.ControlPlane.Tests.Certificates;

/// <summary>A control plane with a CA (self-managed root in a temp directory), a token store, openssl and the grpc-js CA client.</summary>
internal sealed class CaTestKit : IAsyncDisposable
{
    public const string TrustDomain = "test.mesh";

    private CaTestKit(TestControlPlane controlPlane, string work)
    {
        ControlPlane = controlPlane;
        Work = work;
    }

    public TestControlPlane ControlPlane { get; }

    public string Work { get; }

    public string TokenStore => Path.Combine(Work, "tokens.json");

    public static string MeshYaml(string ttl = "24h", string maxTtl = "48h") => $"""
        apiVersion: meshproxy.io/v1alpha1
        kind: MeshConfig
        metadata: {"{"} name: mesh, namespace: meshproxy-system {"}"}
        spec:
          trustDomain: {TrustDomain}
          certificateTtl: {ttl}
          maxCertificateTtl: {maxTtl}
        """;

    /// <param name="time">The control plane's clock (certificate lifetimes are counted from it); null: the system clock.</param>
    /// <param name="host">Further control-plane options (the Kubernetes source, for TokenReview).</param>
    /// <param name="logs">Keeps the control plane's log lines, when given.</param>
    public static async Task<CaTestKit> StartAsync(
        Func<CertificateServiceOptions, CertificateServiceOptions>? configure = null, string ttl = "24h", string maxTtl = "48h", bool tls = false, TimeProvider? time = null,
        Func<ControlPlaneOptions, ControlPlaneOptions>? host = null, LogCapture? logs = null)
    {
        var work = RepoPaths.NewTempDirectory();
        var config = Path.Combine(work, "config");
        Directory.CreateDirectory(config);
        await File.WriteAllTextAsync(Path.Combine(config, "mesh.yaml"), MeshYaml(ttl, maxTtl));
        var options = new CertificateServiceOptions
        {
            CaDirectory = Path.Combine(work, "ca"),
            TokenStoreFile = Path.Combine(work, "tokens.json"),
            TlsEndPoint = tls ? new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0) : null,
        };
        options = configure?.Invoke(options) ?? options;
        var cp = await TestControlPlane.StartAsync(config, configure: o =>
        {
            o = o with { Certificates = options, Time = time ?? o.Time };
            return host is null ? o : host(o);
        }, logs: logs);
        return new CaTestKit(cp, work);
    }

    public string CreateToken(string ns, string sa) => LocalTokenStore.Open(TokenStore).CreateToken(ns, sa);

    public static string SpiffeId(string ns, string sa) => $"spiffe://{TrustDomain}/ns/{ns}/sa/{sa}";

    /// <summary>A P-256 key and a CSR made by openssl, with the given subjectAltName extension (e.g. "URI:spiffe://...").</summary>
    public async Task<string> OpensslCsrAsync(string subjectAltName)
    {
        var name = Guid.NewGuid().ToString("N")[..8];
        var key = Path.Combine(Work, name + "-key.pem");
        var csr = Path.Combine(Work, name + "-csr.pem");
        await RunAsync("openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", key);
        await RunAsync("openssl", "req", "-new", "-key", key, "-subj", "/CN=workload", "-addext", "subjectAltName=" + subjectAltName, "-out", csr);
        return csr;
    }

    /// <summary>Runs the grpc-js client once; <paramref name="token"/> null sends no authorization header.</summary>
    public async Task<CaAnswer> RequestAsync(string csrFile, string? token, long validitySeconds = 0, string? tlsRootFile = null, int? port = null)
    {
        string[] args = [$"127.0.0.1:{port ?? ControlPlane.Host.GrpcEndPoint.Port}", csrFile, token ?? "-", validitySeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), .. tlsRootFile is null ? Array.Empty<string>() : [tlsRootFile]];
        await using var peer = NodePeer.Start("ca_client.js", args);
        var e = await peer.NextAsync(_ => true, TimeSpan.FromSeconds(20));
        return e.GetProperty("ok").GetBoolean()
            ? new CaAnswer(true, 0, null, Strings(e, "chain"), Strings(e, "bundle"))
            : new CaAnswer(false, e.GetProperty("code").GetInt32(), e.GetProperty("details").GetString(), [], []);
    }

    public string Write(string name, string content)
    {
        var path = Path.Combine(Work, name);
        File.WriteAllText(path, content);
        return path;
    }

    public static async Task<string> RunAsync(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 30 s");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {await stderr}{await stdout}");
        }

        return await stdout + await stderr;
    }

    public async ValueTask DisposeAsync()
    {
        await ControlPlane.DisposeAsync();
        try
        {
            Directory.Delete(Work, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static string[] Strings(JsonElement e, string name) => [.. e.GetProperty(name).EnumerateArray().Select(x => x.GetString()!)];
}

internal sealed record CaAnswer(bool Ok, int Code, string? Details, string[] Chain, string[] Bundle);
