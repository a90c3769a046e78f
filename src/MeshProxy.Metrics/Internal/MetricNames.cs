namespace MeshProxy.Metrics.Internal;

/// <summary>Checks names against the Prometheus data model, so a bad name fails at registration, not at scrape.</summary>
internal static class MetricNames
{
    public static void ValidateMetricName(string name, string paramName)
    {
        ArgumentException.ThrowIfNullOrEmpty(name, paramName);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            var ok = char.IsAsciiLetter(c) || c == '_' || c == ':' || (i > 0 && char.IsAsciiDigit(c));
            if (!ok)
            {
                throw new ArgumentException($"Metric name '{name}' is not valid: it must match [a-zA-Z_:][a-zA-Z0-9_:]*.", paramName);
            }
        }
    }

    public static void ValidateLabelNames(IReadOnlyList<string> labelNames, bool isHistogram, string paramName)
    {
        ArgumentNullException.ThrowIfNull(labelNames, paramName);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var label in labelNames)
        {
            ArgumentException.ThrowIfNullOrEmpty(label, paramName);
            for (var i = 0; i < label.Length; i++)
            {
                var c = label[i];
                var ok = char.IsAsciiLetter(c) || c == '_' || (i > 0 && char.IsAsciiDigit(c));
                if (!ok)
                {
                    throw new ArgumentException($"Label name '{label}' is not valid: it must match [a-zA-Z_][a-zA-Z0-9_]*.", paramName);
                }
            }

            if (label.StartsWith("__", StringComparison.Ordinal))
            {
                throw new ArgumentException($"Label name '{label}' is reserved: names starting with '__' belong to Prometheus.", paramName);
            }

            if (isHistogram && label == "le")
            {
                throw new ArgumentException("A histogram cannot have a label named 'le'; the exposition uses it for bucket bounds.", paramName);
            }

            if (!seen.Add(label))
            {
                throw new ArgumentException($"Label name '{label}' appears twice.", paramName);
            }
        }
    }

    public static double[] ValidateBuckets(IReadOnlyList<double> buckets, string paramName)
    {
        ArgumentNullException.ThrowIfNull(buckets, paramName);
        var result = new List<double>(buckets.Count);
        foreach (var bound in buckets)
        {
            if (double.IsNaN(bound))
            {
                throw new ArgumentException("A bucket bound cannot be NaN.", paramName);
            }

            // +Inf is always the implicit last bucket; accept it in the list but do not repeat it.
            if (double.IsPositiveInfinity(bound))
            {
                continue;
            }

            if (result.Count > 0 && bound <= result[^1])
            {
                throw new ArgumentException($"Bucket bounds must be strictly increasing; {bound} follows {result[^1]}.", paramName);
            }

            result.Add(bound);
        }

        return [.. result];
    }
}
