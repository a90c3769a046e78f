using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using MeshProxy.Identity;
using MeshProxy.Sidecar.Telemetry;

namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>Two sidecars with openssl-made SVIDs, real sockets, real TLS between them.</summary>
public sealed class MutualTlsMeshTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("HTTP")]
    [InlineData("HTTP2")]
    public async Task Requests_flow_over_mtls_and_the_app_sees_the_callers_spiffe_id(string protocol)
    {
        await using var mesh = await MtlsMesh.StartAsync(protocol: protocol);

        using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        var storeDer = X509Certificate2.CreateFromPem(File.ReadAllText(MeshPki.Shared.Cert("store"))).RawData;
        var hash = Convert.ToHexStringLower(SHA256.HashData(storeDer));
        Assert.Equal($"By={MeshPki.Id("billing")};Hash={hash};URI={MeshPki.Id("store")}", body.GetProperty("clientCert").GetString());
        Assert.Equal("https", body.GetProperty("forwardedProto").GetString());
        Assert.Equal(protocol == "HTTP" ? "HTTP/1.1" : "HTTP/2", body.GetProperty("protocol").GetString());
        Assert.Equal(1, mesh.Billing.Identity.Counters.InboundHandshakes);
        Assert.Equal(1, mesh.Store.Identity.Counters.OutboundHandshakes);
    }

    [Fact]
    public async Task A_forged_client_cert_header_is_replaced_by_the_verified_one()
    {
        await using var mesh = await MtlsMesh.StartAsync();
        using var request = mesh.ToBilling("/hello");
        request.Headers.Add("x-forwarded-client-cert", $"URI={MeshPki.Id("admin")}");
        using var response = await mesh.Client.SendAsync(request, Ct);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        var xfcc = body.GetProperty("clientCert").GetString()!;
        Assert.EndsWith($";URI={MeshPki.Id("store")}", xfcc, StringComparison.Ordinal);
        Assert.DoesNotContain("admin", xfcc, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_with_the_wrong_spiffe_id_fails_the_request_with_UPI()
    {
        await using var mesh = await MtlsMesh.StartAsync(billingSvid: "impostor");

        using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("UPI", string.Join(',', response.Headers.GetValues(LocalReply.FlagsHeader)));
        var text = await response.Content.ReadAsStringAsync(Ct);
        Assert.Contains(MeshPki.Id("impostor"), text, StringComparison.Ordinal);
        Assert.Equal(1, mesh.Store.Identity.Counters.OutboundRefusedFor(PeerVerificationFailure.IdentityNotAllowed));
        var logged = Assert.Single(mesh.StoreLog.WithEvent(8));
        Assert.Contains("UPI", logged, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_services_subject_alt_names_extend_the_identities_its_endpoints_may_have()
    {
        await using var mesh = await MtlsMesh.StartAsync(billingSvid: "impostor", subjectAltNames: [MeshPki.Id("impostor")]);
        using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Strict_refuses_plaintext_with_one_log_line()
    {
        await using var mesh = await MtlsMesh.StartAsync();
        using var plain = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        await Assert.ThrowsAsync<HttpRequestException>(() => plain.GetAsync(mesh.Billing.InboundUri + "hello", Ct));
        Assert.Equal(1, mesh.Billing.Identity.Counters.PlaintextRefused);
        Assert.Single(mesh.BillingLog.WithEvent(403));

        // mTLS on the same port still works.
        using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Permissive_serves_plaintext_and_mtls_on_one_port()
    {
        await using var mesh = await MtlsMesh.StartAsync(mode: "PERMISSIVE");
        using var plain = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };

        var direct = await plain.GetFromJsonAsync<JsonElement>(mesh.Billing.InboundUri + "hello", Ct);
        Assert.Equal(string.Empty, direct.GetProperty("clientCert").GetString());
        Assert.Equal("http", direct.GetProperty("forwardedProto").GetString());

        using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct);
        var viaMesh = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.EndsWith($"URI={MeshPki.Id("store")}", viaMesh.GetProperty("clientCert").GetString(), StringComparison.Ordinal);
        Assert.Equal("https", viaMesh.GetProperty("forwardedProto").GetString());
        Assert.Equal(1, mesh.Billing.Identity.Counters.PlaintextAccepted);
        Assert.Equal(1, mesh.Billing.Identity.Counters.InboundHandshakes);
    }

    [Fact]
    public async Task Peers_from_either_root_are_accepted_while_the_bundle_holds_two()
    {
        // billing's SVID is from root A, store's from root B; both trust A and B (a CA rotation in progress).
        await using var mesh = await MtlsMesh.StartAsync(storeSvid: "storeB", billingBundle: "bundleAB", storeBundle: "bundleAB");
        using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        // ...and a caller still on root A is accepted too.
        await using var onRootA = MeshPki.Connect(mesh.Billing.Inbound.Port, "store", "-quiet");
        Assert.True(await onRootA.GetAsync("/hello", 1), onRootA.Output);
    }

    [Fact]
    public async Task Certs_shows_the_chain_identity_validity_and_trust_bundle()
    {
        await using var mesh = await MtlsMesh.StartAsync(billingBundle: "bundleAB");
        using var admin = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var certs = await admin.GetFromJsonAsync<JsonElement>($"http://{mesh.Billing.Admin}/certs", Ct);

        var leaf = X509Certificate2.CreateFromPem(File.ReadAllText(MeshPki.Shared.Cert("billing")));
        Assert.Equal(MeshPki.Id("billing"), certs.GetProperty("spiffeId").GetString());
        Assert.Equal(leaf.SerialNumber, certs.GetProperty("chain")[0].GetProperty("serialNumber").GetString());
        Assert.Equal(leaf.Subject, certs.GetProperty("chain")[0].GetProperty("subject").GetString());
        var seconds = certs.GetProperty("secondsToExpiry").GetInt64();
        Assert.InRange(seconds, (long)TimeSpan.FromDays(29).TotalSeconds, (long)TimeSpan.FromDays(30).TotalSeconds);
        Assert.Equal(leaf.NotAfter.ToUniversalTime(), certs.GetProperty("notAfter").GetDateTimeOffset().UtcDateTime);
        Assert.Equal(2, certs.GetProperty("trustBundle").GetArrayLength());
        Assert.Contains("Mesh root B", certs.GetProperty("trustBundle")[1].GetProperty("subject").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_an_identity_the_sidecar_stays_plaintext()
    {
        await using var mesh = new Functional.TwoSidecarMesh();
        await mesh.InitializeAsync();
        Assert.False(mesh.Store.Identity.Enabled);
        using var response = await mesh.Client.SendAsync(mesh.ToBilling(HttpMethod.Get, "/hello"), Ct);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal("http", body.GetProperty("forwardedProto").GetString());
        Assert.Equal(string.Empty, body.GetProperty("clientCert").GetString());
    }
}
