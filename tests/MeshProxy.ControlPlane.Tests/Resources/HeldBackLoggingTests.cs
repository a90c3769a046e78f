using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Tests.Resources;

/// <summary>A held-back resource is logged once per change of it, not again at every unrelated generation.</summary>
public sealed class HeldBackLoggingTests
{
    private const int HeldBack = 14;
    private const int HeldBackServingLastGood = 15;
    private const int NoLongerHeldBack = 16;
    private const int ConfigLoaded = 1;

    [Fact]
    public void Each_held_back_version_is_logged_once_and_its_recovery_once()
    {
        var dir = RepoPaths.NewTempDirectory();
        var logs = new LogCapture();
        using var factory = LoggerFactory.Create(b => b.AddProvider(logs));
        using var directory = new ResourceDirectory(dir, TimeSpan.FromMilliseconds(100), factory.CreateLogger<ResourceDirectory>());
        Yaml.Write(dir, "services.yaml", Yaml.Service("a", "shop", 80, 9001));
        Yaml.Write(dir, "route.yaml", Yaml.Route("r", "shop", "a", "nowhere"));
        directory.Reload();
        var line = Assert.Single(logs.WithEvent(HeldBack));
        Assert.Contains("HttpRoute/shop/r", line, StringComparison.Ordinal);
        Assert.Contains($"{Path.Combine(dir, "route.yaml")}:1: spec.http[0].route[0].destination.host: no Service answers to host 'nowhere'", line, StringComparison.Ordinal);

        // An unrelated change is a new generation, but the same held-back version is not logged again.
        Yaml.Write(dir, "other.yaml", Yaml.Service("b", "shop", 80, 9002));
        directory.Reload();
        Assert.Equal(2, logs.WithEvent(ConfigLoaded).Count);
        Assert.Single(logs.WithEvent(HeldBack));

        // Fixed, then broken again: the last good version keeps serving, and that is what the line says.
        Yaml.Write(dir, "route.yaml", Yaml.Route("r", "shop", "a", "b"));
        directory.Reload();
        Assert.Single(logs.WithEvent(NoLongerHeldBack));
        Assert.Empty(directory.Current.HeldBack);
        Yaml.Write(dir, "route.yaml", Yaml.Route("r", "shop", "a", "elsewhere"));
        directory.Reload();
        Assert.Contains("last good version", Assert.Single(logs.WithEvent(HeldBackServingLastGood)), StringComparison.Ordinal);
        Assert.Single(logs.WithEvent(HeldBack));
        Assert.Single(directory.Current.HeldBack);
    }
}
