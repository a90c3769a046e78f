using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using MeshProxy.Sidecar.Telemetry;
using MeshProxy.Sidecar.Tests.Identity;

namespace MeshProxy.Sidecar.Tests.Telemetry;

/// <summary>Peer metadata between two sidecars over real mTLS: each side reports the other's workload; no app sees the header; nobody else can set it.</summary>
public sealed class PeerMetadataTests
{
    private const string Header = "x-meshproxy-peer";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Over_mtls_each_sidecar_reports_the_other_workload_and_neither_app_sees_the_header()
    {
        await using var mesh = await MtlsMesh.StartAsync();

        // The calling app tries to pass itself off as another workload: its own sidecar replaces that.
        using var request = mesh.ToBilling("/hello");
        request.Headers.Add(Header, "v1;admin;test;admin;;admin;");
        using var response = await mesh.Client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(response.Headers.Contains(Header), "the calling app must not see the destination's metadata");
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.False(body.GetProperty("headers").TryGetProperty(Header, out _), "the destination app must not see the caller's metadata");

        var store = await Exposition.ScrapeAsync(mesh.Client, mesh.Store.Stats);
        var source = Assert.Single(store.Find("istio_requests_total", ("reporter", "source"), ("response_code", "200")));
        Assert.Equal("billing", source.Labels["destination_workload"]);
        Assert.Equal("test", source.Labels["destination_workload_namespace"]);
        Assert.Equal("billing", source.Labels["destination_app"]);
        Assert.Equal("billing", source.Labels["destination_canonical_service"]);

        // Istio's source-side semantics: the principal is the one the server's certificate proved when
        // this sidecar originated mTLS; the policy is "unknown" (only the destination can say mutual_tls).
        Assert.Equal(MeshPki.Id("billing"), source.Labels["destination_principal"]);
        Assert.Equal(MeshPki.Id("store"), source.Labels["source_principal"]);
        Assert.Equal("unknown", source.Labels["connection_security_policy"]);

        var billing = await Exposition.ScrapeAsync(mesh.Client, mesh.Billing.Stats);
        var destination = Assert.Single(billing.Find("istio_requests_total", ("reporter", "destination"), ("response_code", "200")));
        Assert.Equal("store", destination.Labels["source_workload"]);
        Assert.Equal("test", destination.Labels["source_workload_namespace"]);
        Assert.Equal("store", destination.Labels["source_app"]);
        Assert.Equal("store", destination.Labels["source_canonical_service"]);
        Assert.Equal("mutual_tls", destination.Labels["connection_security_policy"]);
        Assert.Equal(MeshPki.Id("store"), destination.Labels["source_principal"]);
        Assert.Equal(MeshPki.Id("billing"), destination.Labels["destination_principal"]);
        Assert.DoesNotContain(billing, s => s.Labels.TryGetValue("source_workload", out var w) && w == "admin");
    }

    [Fact]
    public async Task A_plaintext_callers_forged_metadata_is_ignored_stripped_and_not_answered()
    {
        await using var mesh = await MtlsMesh.StartAsync(mode: "PERMISSIVE");

        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(mesh.Billing.InboundUri, "/hello"));
        request.Headers.Add(Header, "v1;admin;test;admin;v9;admin;v9");
        using var response = await mesh.Client.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(response.Headers.Contains(Header), "metadata is answered to mTLS peers only");
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.False(body.GetProperty("headers").TryGetProperty(Header, out _), "the app must not see a forged header");

        var billing = await Exposition.ScrapeAsync(mesh.Client, mesh.Billing.Stats);
        var destination = Assert.Single(billing.Find("istio_requests_total", ("reporter", "destination"), ("response_code", "200")));
        Assert.Equal("unknown", destination.Labels["source_workload"]);
        Assert.Equal("unknown", destination.Labels["source_app"]);
        Assert.Equal("none", destination.Labels["connection_security_policy"]);
    }

    [Theory]
    [InlineData("v1;billing;test;billing;v2;billing;v2", "billing", "test", "v2")]
    [InlineData("v1;billing;test;;;;", "billing", "test", null)]
    public void A_well_formed_value_parses_to_the_same_instance_each_time(string value, string workload, string ns, string? revision)
    {
        var parsed = PeerMetadata.Parse(value);
        Assert.NotNull(parsed);
        Assert.Equal(workload, parsed.Workload);
        Assert.Equal(ns, parsed.Namespace);
        Assert.Equal(revision, parsed.CanonicalRevision);
        Assert.Same(parsed, PeerMetadata.Parse(new string(value.AsSpan())));
    }

    [Theory]
    [InlineData("")]
    [InlineData("v2;billing;test;billing;v2;billing;v2")]
    [InlineData("v1;billing;test;billing;v2;billing")]
    [InlineData("v1;billing;test;billing;v2;billing;v2;extra")]
    [InlineData("v1;;test;billing;v2;billing;v2")]
    [InlineData("v1;billing;;billing;v2;billing;v2")]
    [InlineData("v1;bill\"ing;test;billing;v2;billing;v2")]
    [InlineData("v1;billing;test;billing;v2;bill ing;v2")]
    public void A_malformed_value_is_ignored(string value) => Assert.Null(PeerMetadata.Parse(value));

    [Fact]
    public void This_workloads_header_round_trips()
    {
        var value = PeerMetadata.Encode("reviews-v2", "bookinfo", "reviews", "v2", "reviews", null);
        Assert.Equal("v1;reviews-v2;bookinfo;reviews;v2;reviews;", value);
        var parsed = PeerMetadata.Parse(value)!;
        Assert.Equal(("reviews-v2", "bookinfo", "reviews", "v2", "reviews", (string?)null), (parsed.Workload, parsed.Namespace, parsed.CanonicalService, parsed.CanonicalRevision, parsed.App, parsed.Version));
    }
}
