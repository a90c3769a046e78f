using System.Text.Json;
using MeshProxy.Identity.Bootstrap;

namespace MeshProxy.Identity.Tests;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class LocalTokenStoreTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    private string StorePath => _dir.File("tokens.json");

    [Fact]
    public async Task Tokens_authenticate_their_workload_only_and_survive_a_reload()
    {
        var store = LocalTokenStore.Open(StorePath);
        var web = store.CreateToken("default", "web");
        var api = store.CreateToken("shop", "api");

        Assert.Equal(new WorkloadIdentity("default", "web"), await store.AuthenticateAsync(web, TestContext.Current.CancellationToken));
        Assert.Equal(new WorkloadIdentity("shop", "api"), await store.AuthenticateAsync(api, TestContext.Current.CancellationToken));
        Assert.Null(await store.AuthenticateAsync(web[..^1] + (web[^1] == 'A' ? 'B' : 'A'), TestContext.Current.CancellationToken));
        Assert.Null(await store.AuthenticateAsync(string.Empty, TestContext.Current.CancellationToken));

        var reloaded = LocalTokenStore.Open(StorePath);
        Assert.Equal(new WorkloadIdentity("default", "web"), await reloaded.AuthenticateAsync(web, TestContext.Current.CancellationToken));
        Assert.Equal("spiffe://example.org/ns/shop/sa/api", (await reloaded.AuthenticateAsync(api, TestContext.Current.CancellationToken))!.ToSpiffeId("example.org").Value);
    }

    [Fact]
    public async Task File_is_0600_and_holds_only_hashes()
    {
        var store = LocalTokenStore.Open(StorePath);
        var token = store.CreateToken("default", "web");

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(StorePath));
        var text = await File.ReadAllTextAsync(StorePath, TestContext.Current.CancellationToken);
        Assert.DoesNotContain(token, text);
        using var json = JsonDocument.Parse(text);
        var hash = json.RootElement.GetProperty("tokens")[0].GetProperty("sha256").GetString();
        Assert.Equal(Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(token))), hash);

        File.SetUnixFileMode(StorePath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        Assert.Contains("chmod 600", Assert.Throws<InvalidDataException>(() => LocalTokenStore.Open(StorePath)).Message);
    }

    [Fact]
    public async Task A_new_token_replaces_the_old_one_and_revoking_forgets_it()
    {
        var store = LocalTokenStore.Open(StorePath);
        var old = store.CreateToken("default", "web");
        var fresh = store.CreateToken("default", "web");

        Assert.Null(await store.AuthenticateAsync(old, TestContext.Current.CancellationToken));
        Assert.NotNull(await store.AuthenticateAsync(fresh, TestContext.Current.CancellationToken));
        Assert.True(store.Revoke("default", "web"));
        Assert.Null(await store.AuthenticateAsync(fresh, TestContext.Current.CancellationToken));
        Assert.False(store.Revoke("default", "web"));
        Assert.Empty(LocalTokenStore.Open(StorePath).Workloads);
    }

    [Fact]
    public void Bad_names_and_corrupt_files_are_refused_clearly()
    {
        var store = LocalTokenStore.Open(StorePath);
        Assert.Throws<ArgumentException>(() => store.CreateToken("a/b", "web"));

        File.WriteAllText(StorePath, "{ not json");
        File.SetUnixFileMode(StorePath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Assert.Throws<InvalidDataException>(() => LocalTokenStore.Open(StorePath));
    }

    public void Dispose() => _dir.Dispose();
}
