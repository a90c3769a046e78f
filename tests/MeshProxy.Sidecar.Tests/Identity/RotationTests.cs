using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace MeshProxy.Sidecar.Tests.Identity;

/// <summary>Certificates rewritten on disk under load, as cert-manager or SPIRE's helper would.</summary>
public sealed partial class RotationTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Rotating_both_sidecars_certificates_under_load_fails_no_request_and_new_handshakes_use_the_new_ones()
    {
        var pki = MeshPki.Shared;
        await using var mesh = await MtlsMesh.StartAsync();
        var newBilling = pki.FreshSvid("rootA", "billing");
        var newStore = pki.FreshSvid("rootA", "store");
        var newStoreHash = Hash(pki.Cert(newStore));
        var oldStoreHash = Hash(pki.Cert("store"));

        var seenHashes = new ConcurrentDictionary<string, int>();
        var failures = new ConcurrentQueue<string>();
        long completed = 0;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var concurrency = 4;

        async Task WorkerAsync()
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), CancellationToken.None);
                    if (response.StatusCode != HttpStatusCode.OK)
                    {
                        failures.Enqueue($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(CancellationToken.None)}");
                        continue;
                    }

                    var body = await response.Content.ReadFromJsonAsync<JsonElement>(CancellationToken.None);
                    var hash = HashPattern().Match(body.GetProperty("clientCert").GetString()!).Groups[1].Value;
                    seenHashes.AddOrUpdate(hash, 1, (_, n) => n + 1);
                    Interlocked.Increment(ref completed);
                }
                catch (HttpRequestException ex)
                {
                    failures.Enqueue(ex.Message);
                }
            }
        }

        var workers = Enumerable.Range(0, concurrency).Select(_ => Task.Run(WorkerAsync, CancellationToken.None)).ToList();
        await Task.Delay(1000, Ct);

        pki.Replace(mesh.BillingFiles, newBilling);
        pki.Replace(mesh.StoreFiles, newStore);
        await Eventually.TrueAsync(() => mesh.Billing.Identity.Store.Current?.Certificate.SerialNumber == Serial(pki.Cert(newBilling)), "billing to load its new certificate");
        await Eventually.TrueAsync(() => mesh.Store.Identity.Store.Current?.Certificate.SerialNumber == Serial(pki.Cert(newStore)), "store to load its new certificate");

        // More concurrency than before makes the store open new connections: they must present the new certificate.
        workers.AddRange(Enumerable.Range(0, 12).Select(_ => Task.Run(WorkerAsync, CancellationToken.None)));
        await Task.Delay(1500, Ct);
        await stop.CancelAsync();
        await Task.WhenAll(workers);

        Assert.Empty(failures);
        Assert.True(completed > 100, $"only {completed} requests completed");
        Assert.True(seenHashes.ContainsKey(oldStoreHash), "no request used a connection made before the rotation");
        Assert.True(seenHashes.ContainsKey(newStoreHash), "no connection made after the rotation presented the new certificate");

        // A new handshake with billing's inbound sees billing's new certificate.
        await using var probe = MeshPki.Connect(mesh.Billing.Inbound.Port, newStore);
        Assert.True(await probe.GetAsync("/", 1), probe.Output);
        var served = X509Certificate2.CreateFromPem(PemPattern().Match(probe.Stdout).Value);
        Assert.Equal(Serial(pki.Cert(newBilling)), served.SerialNumber);
        Assert.Equal(0, mesh.Billing.Identity.Counters.InboundPeerRefused);
    }

    [Fact]
    public async Task Half_rewritten_files_are_refused_and_the_current_identity_stays()
    {
        var pki = MeshPki.Shared;
        await using var mesh = await MtlsMesh.StartAsync();
        var before = mesh.Billing.Identity.Store.Current!.Certificate.SerialNumber;

        // A new certificate with the old key: the pair does not hold together.
        var other = pki.FreshSvid("rootA", "billing");
        File.Copy(pki.Cert(other), mesh.BillingFiles.Chain, overwrite: true);
        await Eventually.TrueAsync(() => mesh.BillingLog.WithEvent(406).Count == 1, "one log line for the unusable files");
        Assert.Equal(before, mesh.Billing.Identity.Store.Current!.Certificate.SerialNumber);
        using (var response = await mesh.Client.SendAsync(mesh.ToBilling("/hello"), Ct))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // The key arrives: the new identity is taken.
        File.Copy(pki.Key(other), mesh.BillingFiles.Key, overwrite: true);
        await Eventually.TrueAsync(() => mesh.Billing.Identity.Store.Current!.Certificate.SerialNumber == Serial(pki.Cert(other)), "the completed pair to be loaded");
        Assert.Single(mesh.BillingLog.WithEvent(406));
    }

    private static string Hash(string pemFile) =>
        Convert.ToHexStringLower(SHA256.HashData(X509Certificate2.CreateFromPem(File.ReadAllText(pemFile)).RawData));

    private static string Serial(string pemFile) => X509Certificate2.CreateFromPem(File.ReadAllText(pemFile)).SerialNumber;

    [GeneratedRegex("Hash=([0-9a-f]{64})")]
    private static partial Regex HashPattern();

    [GeneratedRegex("-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----")]
    private static partial Regex PemPattern();
}
