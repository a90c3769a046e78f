using MeshProxy.Config.Parsing;

namespace MeshProxy.Config.Tests;

public sealed class DurationsTests
{
    [Theory]
    [InlineData("250ms", 250)]
    [InlineData("5s", 5000)]
    [InlineData("1.5s", 1500)]
    [InlineData("1m30s", 90_000)]
    [InlineData("1h", 3_600_000)]
    public void Parses_istio_style_durations(string text, double expectedMs)
    {
        Assert.True(Durations.TryParse(text, out var value));
        Assert.Equal(expectedMs, value.TotalMilliseconds);
    }

    [Theory]
    [InlineData("5")]
    [InlineData("")]
    [InlineData("5 parsecs")]
    [InlineData("s")]
    [InlineData("-1s")]
    public void Refuses_what_is_not_a_duration(string text) => Assert.False(Durations.TryParse(text, out _));
}
