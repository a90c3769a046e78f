using System.Text;
using MeshProxy.Metrics.Istio;
using Prometheus;

namespace MeshProxy.Metrics.Tests;

internal static class Scrape
{
    public static string Text(MetricsRegistry registry) => Export(registry, ExpositionFormat.PrometheusText);

    public static string OpenMetrics(MetricsRegistry registry) => Export(registry, ExpositionFormat.OpenMetricsText);

    private static string Export(MetricsRegistry registry, ExpositionFormat format)
    {
        using var buffer = new MemoryStream();
        registry.WriteAsync(buffer, format).GetAwaiter().GetResult();
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    public static IstioWorkloadLabels Workload(string reporter = "destination", string sourceWorkload = "frontend") => new()
    {
        Reporter = reporter,
        SourceWorkload = sourceWorkload,
        SourceCanonicalService = "frontend",
        SourceWorkloadNamespace = "shop",
        SourcePrincipal = "spiffe://cluster.local/ns/shop/sa/frontend",
        SourceApp = "frontend",
        SourceVersion = "v1",
        SourceCluster = "local",
        DestinationWorkload = "cart",
        DestinationWorkloadNamespace = "shop",
        DestinationPrincipal = "spiffe://cluster.local/ns/shop/sa/cart",
        DestinationApp = "cart",
        DestinationVersion = "v2",
        DestinationService = "cart.shop.svc.cluster.local",
        DestinationCanonicalService = "cart",
        DestinationCanonicalRevision = "v2",
        DestinationServiceName = "cart",
        DestinationServiceNamespace = "shop",
        DestinationCluster = "local",
    };

    public static RequestLabels Request(int code = 200, string reporter = "destination") => new()
    {
        Workload = Workload(reporter),
        RequestProtocol = "http",
        ResponseCode = code,
        ResponseFlags = "-",
        ConnectionSecurityPolicy = "mutual_tls",
    };

    public static TcpLabels Tcp() => new()
    {
        Workload = Workload(),
        ResponseFlags = "-",
        ConnectionSecurityPolicy = "mutual_tls",
    };

    public static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "MeshProxy.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("MeshProxy.sln not found above " + AppContext.BaseDirectory);
    }
}
