using System.Globalization;
using System.Text.RegularExpressions;

namespace MeshProxy.Testing;

/// <summary>One sample of a Prometheus text exposition.</summary>
public sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

/// <summary>Reads the samples of a text exposition (enough of the format to check our own output).</summary>
public static partial class Exposition
{
    public static async Task<IReadOnlyList<Sample>> ScrapeAsync(HttpClient client, System.Net.IPEndPoint stats, string path = "/metrics")
    {
        var text = await client.GetStringAsync(new Uri($"http://{stats}{path}"));
        return Parse(text);
    }

    public static IReadOnlyList<Sample> Parse(string text)
    {
        var samples = new List<Sample>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var m = SampleLine().Match(line);
            Assert.True(m.Success, "unparseable exposition line: " + line);
            var labels = new Dictionary<string, string>();
            foreach (Match l in LabelPair().Matches(m.Groups["labels"].Value))
            {
                labels[l.Groups["k"].Value] = l.Groups["v"].Value.Replace("\\\"", "\"", StringComparison.Ordinal).Replace("\\\\", "\\", StringComparison.Ordinal);
            }

            samples.Add(new Sample(m.Groups["name"].Value, labels, double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture)));
        }

        return samples;
    }

    /// <summary>The sum of the samples named <paramref name="name"/> whose labels include all of <paramref name="match"/>.</summary>
    public static double Sum(this IReadOnlyList<Sample> samples, string name, params (string Label, string Value)[] match) =>
        samples.Where(s => s.Name == name && match.All(m => s.Labels.TryGetValue(m.Label, out var v) && v == m.Value)).Sum(s => s.Value);

    public static IEnumerable<Sample> Find(this IReadOnlyList<Sample> samples, string name, params (string Label, string Value)[] match) =>
        samples.Where(s => s.Name == name && match.All(m => s.Labels.TryGetValue(m.Label, out var v) && v == m.Value));

    /// <summary>The value of the one sample named exactly <paramref name="series"/> (name plus label block, as written).</summary>
    public static double Value(string exposition, string series)
    {
        var match = Regex.Match(exposition, "^" + Regex.Escape(series) + " (\\S+)$", RegexOptions.Multiline);
        Assert.True(match.Success, $"no sample {series} in:\n{exposition}");
        return double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [GeneratedRegex("^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(?<labels>.*)\\})? (?<value>\\S+)$")]
    private static partial Regex SampleLine();

    [GeneratedRegex("(?<k>[a-zA-Z_][a-zA-Z0-9_]*)=\"(?<v>(?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex LabelPair();
}
