using System.Text.Json.Nodes;
using MeshProxy.Injection.Capture;
using MeshProxy.Injection.Internal;
using MeshProxy.Injection.Manifests;
using MeshProxy.Injection.Tests.Infrastructure;

namespace MeshProxy.Injection.Tests;

public sealed class CaptureRulesTests
{
    [Fact]
    public void Settings_survive_the_trip_through_the_init_containers_arguments()
    {
        var settings = new CaptureSettings
        {
            IncludeInboundPorts = null,
            ExcludeInboundPorts = [9090],
            ExcludeOutboundPorts = [5432, 6379],
            ExcludeOutboundIPRanges = CaptureSettings.ParseRanges("t", "169.254.169.254, 10.1.0.0/16"),
            IncludeOutboundIPRanges = CaptureSettings.ParseRanges("t", "10.96.0.0/12"),
            OutboundPort = 16001,
        };
        var back = CaptureSettings.FromInitArgs(settings.ToInitArgs(), out _);
        Assert.Equal(IptablesRules.Build(settings), IptablesRules.Build(back));
        Assert.Contains("-A MESHPROXY_OUTPUT -d 169.254.169.254/32 -j RETURN\n", IptablesRules.Build(back), StringComparison.Ordinal);
        Assert.Contains("--to-ports 16001", IptablesRules.Build(back), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--outbound-port", "0", "not a port")]
    [InlineData("--exclude-outbound-ip-ranges", "fd00::/8", "IPv6")]
    [InlineData("--bogus", "1", "unknown option")]
    public void Bad_init_arguments_name_the_option(string option, string value, string reason)
    {
        var ex = Assert.Throws<CaptureSettingsException>(() => CaptureSettings.FromInitArgs([option, value], out _));
        Assert.Contains(reason, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Existing_jumps_are_deleted_and_added_once()
    {
        var saved = "*nat\n-A PREROUTING -p tcp -j MESHPROXY_INBOUND\n-A OUTPUT -p tcp -j MESHPROXY_OUTPUT\n-A OUTPUT -p tcp -j MESHPROXY_OUTPUT\nCOMMIT\n";
        var (pre, output) = IptablesRules.CountJumps(saved);
        var rules = IptablesRules.Build(new CaptureSettings(), pre, output).Split('\n');
        Assert.Equal(1, rules.Count(l => l == "-D PREROUTING -p tcp -j MESHPROXY_INBOUND"));
        Assert.Equal(2, rules.Count(l => l == "-D OUTPUT -p tcp -j MESHPROXY_OUTPUT"));
        Assert.Equal(1, rules.Count(l => l == "-A OUTPUT -p tcp -j MESHPROXY_OUTPUT"));
    }

    [Fact]
    public async Task Meshproxy_init_run_twice_replaces_its_rules_in_a_real_network_namespace()
    {
        Assert.SkipUnless(Environment.UserName == "root", "needs root: network namespaces and iptables");
        var ns = "mp-init-" + Guid.NewGuid().ToString("N")[..8];
        Assert.Equal(0, (await Run.ProcessAsync("ip", ["netns", "add", ns])).Exit);
        try
        {
            var first = await Run.ProcessAsync("ip", ["netns", "exec", ns, "dotnet", RepoPaths.Bin("meshproxy-init"), "--include-inbound-ports", "8080"]);
            Assert.True(first.Exit == 0, first.Stderr);
            var second = await Run.ProcessAsync("ip", ["netns", "exec", ns, "dotnet", RepoPaths.Bin("meshproxy-init"), "--include-inbound-ports", "9090", "--exclude-outbound-ports", "5432"]);
            Assert.True(second.Exit == 0, second.Stderr);
            var saved = (await Run.ProcessAsync("ip", ["netns", "exec", ns, "iptables-save", "-t", "nat"])).Stdout.Split('\n');
            Assert.Single(saved, l => l == "-A PREROUTING -p tcp -j MESHPROXY_INBOUND");
            Assert.Single(saved, l => l == "-A OUTPUT -p tcp -j MESHPROXY_OUTPUT");
            Assert.Contains(saved, l => l.Contains("--dport 9090 -j MESHPROXY_IN_REDIRECT", StringComparison.Ordinal));
            Assert.DoesNotContain(saved, l => l.Contains("--dport 8080", StringComparison.Ordinal));
            Assert.Contains(saved, l => l.Contains("--dport 5432 -j RETURN", StringComparison.Ordinal));

            var dry = await Run.DotnetAsync("meshproxy-init", "--dry-run", "--include-inbound-ports", "9090", "--exclude-outbound-ports", "5432");
            Assert.Equal(IptablesRules.Build(CaptureSettings.FromInitArgs(["--include-inbound-ports", "9090", "--exclude-outbound-ports", "5432"], out _)), dry.Stdout);

            var bad = await Run.DotnetAsync("meshproxy-init", "--exclude-outbound-ports", "http");
            Assert.Equal(2, bad.Exit);
            Assert.Contains("--exclude-outbound-ports: 'http' is not a port", bad.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            await Run.ProcessAsync("ip", ["netns", "del", ns]);
        }
    }

    [Theory]
    [InlineData("256Mi", 268435456)]
    [InlineData("1Gi", 1073741824)]
    [InlineData("1.5G", 1500000000)]
    [InlineData("100m", 0.1)]
    [InlineData("128974848", 128974848)]
    [InlineData("129e6", 129000000)]
    public void Quantities_are_read_as_kubernetes_does(string text, double expected) =>
        Assert.True(Quantity.TryParse(text, out var value) && (double)value == expected, $"{text} -> {value}");

    [Fact]
    public void Strings_that_look_like_other_types_stay_strings_through_yaml()
    {
        var doc = new JsonObject
        {
            ["version"] = "1.0", ["flag"] = "yes", ["port"] = "8080", ["empty"] = "", ["nul"] = "null", ["hex"] = "0x1F",
            ["multi"] = "a: b\nc\n", ["real"] = 8080, ["bool"] = true, ["colon"] = "a: b",
        };
        var back = YamlJson.ReadDocuments(YamlJson.WriteDocuments([doc]))[0];
        Assert.True(JsonNode.DeepEquals(doc, back), YamlJson.WriteDocuments([doc]));
    }
}
