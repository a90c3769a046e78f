namespace MeshProxy.Metrics.Internal;

/// <summary>One metric family in the exposition: its HELP/TYPE lines and its samples.</summary>
internal interface IMetricFamily
{
    string Name { get; }

    void Write(ExpositionWriter writer);
}

/// <summary>Something that reads its source once per scrape before its families are written (e.g. /proc files).</summary>
internal interface IScrapePreparer
{
    void PrepareForScrape();
}
