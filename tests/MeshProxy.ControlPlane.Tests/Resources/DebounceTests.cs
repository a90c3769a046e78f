using MeshProxy.ControlPlane.Resources;
using MeshProxy.ControlPlane.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace MeshProxy.ControlPlane.Tests.Resources;

/// <summary>The directory's debounce on the injected clock: a burst of writes is read once, after the quiet time, and not before.</summary>
public sealed class DebounceTests
{
    [Fact]
    public async Task A_burst_of_writes_is_read_once_when_the_quiet_time_has_passed_on_the_clock()
    {
        var dir = RepoPaths.NewTempDirectory();
        Yaml.Write(dir, "a.yaml", Yaml.Service("a", "shop", 80, 9000));
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        // An hour: on the wall clock this test would time out; only the injected clock can end the wait.
        var debounce = TimeSpan.FromHours(1);
        using var directory = new ResourceDirectory(dir, debounce, NullLogger<ResourceDirectory>.Instance, clock);
        directory.Start();
        var generation = directory.Current.Generation;

        for (var port = 9001; port <= 9005; port++)
        {
            Yaml.Write(dir, "a.yaml", Yaml.Service("a", "shop", 80, port));
        }

        // However long the watcher takes to report the writes, nothing is read while the clock stands still.
        await Task.Delay(1000, TestContext.Current.CancellationToken);
        Assert.Equal(generation, directory.Current.Generation);
        clock.Advance(debounce - TimeSpan.FromSeconds(1));
        Assert.Equal(generation, directory.Current.Generation);

        // Past the quiet time: one reload, of the last write. (Advancing in the loop covers a watcher slower than the delay above.)
        await TestControlPlane.EventuallyAsync(() =>
        {
            clock.Advance(debounce);
            return Task.FromResult(directory.Current.Generation > generation);
        }, "the directory read again", TimeSpan.FromSeconds(15));
        Assert.Equal(generation + 1, directory.Current.Generation);
        Assert.Contains("9005", Assert.Single(directory.Current.Resources).Yaml, StringComparison.Ordinal);
    }
}
