using System.Text.Json.Nodes;
using MeshProxy.Injection.Tests.Infrastructure;

namespace MeshProxy.Injection.Tests;

/// <summary>The meshproxy-injector process over real TLS, driven by curl as the API server would call it.</summary>
public sealed class WebhookHttpsTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("meshproxy-webhook-").FullName;
    private ExternalProcess? _server;
    private string _base = string.Empty;

    public async ValueTask InitializeAsync()
    {
        // A CA and a serving certificate for the Service's name, as the caBundle script would make.
        await Openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=meshproxy-webhook-ca");
        await Openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=meshproxy-controlplane.meshproxy-system.svc");
        File.WriteAllText(Path.Combine(_dir, "san.ext"), "subjectAltName=DNS:meshproxy-controlplane.meshproxy-system.svc,IP:127.0.0.1\n");
        await Openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tls.crt", "-days", "1", "-extfile", "san.ext");

        _server = ExternalProcess.Start("dotnet", [RepoPaths.Bin("meshproxy-injector"), "serve", "--listen", "127.0.0.1:0",
            "--tls-cert", Path.Combine(_dir, "tls.crt"), "--tls-key", Path.Combine(_dir, "tls.key"), "--sidecar-image", "registry.example/meshproxy/sidecar:0.1.0",
            "--init-image", "registry.example/meshproxy/init:0.1.0"]);
        var line = await _server.WaitForLineAsync("webhook listening on", TimeSpan.FromSeconds(30));
        _base = line[line.IndexOf("https://", StringComparison.Ordinal)..].Replace("/inject", "", StringComparison.Ordinal);
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Curl_posting_a_review_gets_the_patch_over_verified_tls()
    {
        var review = Path.Combine(_dir, "review.json");
        await File.WriteAllTextAsync(review, InjectionGoldenTests.ReviewJson(InjectionGoldenTests.ReadPod("multi-container-pod")), TestContext.Current.CancellationToken);
        var result = await Curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@" + review, _base + "/inject");
        var (status, body) = Split(result);
        Assert.Equal("200", status);
        var (response, patch) = InjectionGoldenTests.ParseReply(body);
        Assert.True(response["allowed"]!.GetValue<bool>());
        var injected = JsonPatch.Apply(InjectionGoldenTests.ReadPod("multi-container-pod"), patch!);
        var golden = Manifests.YamlJson.ReadDocuments(await File.ReadAllTextAsync(Path.Combine(RepoPaths.TestData("MeshProxy.Injection.Tests"), "multi-container-pod.golden.yaml"), TestContext.Current.CancellationToken))[0];
        Assert.True(JsonNode.DeepEquals(golden, injected));
        Assert.Contains("pod Injected", _server!.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Health_wrong_content_type_and_garbage_get_clear_answers()
    {
        Assert.Equal(("200", "ok\n"), Split(await Curl(_base + "/healthz")));
        var (status415, _) = Split(await Curl("-X", "POST", "-H", "Content-Type: text/plain", "--data", "x", _base + "/inject"));
        Assert.Equal("415", status415);
        var (status400, body400) = Split(await Curl("-X", "POST", "-H", "Content-Type: application/json", "--data", "{\"kind\":\"Pod\"}", _base + "/inject"));
        Assert.Equal("400", status400);
        Assert.Contains("expected kind AdmissionReview", body400, StringComparison.Ordinal);
        var (status404, _) = Split(await Curl(_base + "/mutate"));
        Assert.Equal("404", status404);
        Assert.False(_server!.HasExited);
    }

    [Fact]
    public async Task A_client_that_does_not_trust_the_ca_is_refused_by_curl()
    {
        var result = await Run.ProcessAsync("curl", ["-s", "--max-time", "10", "-o", "/dev/null", _base + "/healthz"]);
        Assert.Equal(60, result.Exit); // CURLE_PEER_FAILED_VERIFICATION: the certificate is really served
    }

    private async Task<string> Curl(params string[] args)
    {
        var result = await Run.ProcessAsync("curl", ["-s", "--http2", "--max-time", "60", "--cacert", Path.Combine(_dir, "ca.crt"), "-w", "\n%{http_code}", .. args]);
        Assert.True(result.Exit == 0, $"curl exited {result.Exit}: {result.Stderr}");
        return result.Stdout;
    }

    private static (string Status, string Body) Split(string curlOutput)
    {
        var cut = curlOutput.LastIndexOf('\n');
        return (curlOutput[(cut + 1)..], curlOutput[..cut]);
    }

    private async Task Openssl(params string[] args)
    {
        var result = await Run.ProcessAsync("sh", ["-c", $"cd '{_dir}' && openssl {string.Join(' ', args.Select(a => $"'{a}'"))}"]);
        Assert.True(result.Exit == 0, $"openssl {string.Join(' ', args)}: {result.Stderr}");
    }
}
