using System.Globalization;
using System.Text.RegularExpressions;

namespace MeshProxy.ControlPlane.Tests.Infrastructure;

/// <summary>Reading a Prometheus text exposition (a sidecar's or the control plane's /metrics).</summary>
internal static class Exposition
{
    /// <summary>The value of the one sample named exactly <paramref name="series"/> (name plus label block).</summary>
    public static double Sample(string exposition, string series)
    {
        var match = Regex.Match(exposition, "^" + Regex.Escape(series) + " (\\S+)$", RegexOptions.Multiline);
        Assert.True(match.Success, $"no sample {series} in:\n{exposition}");
        return double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }
}
