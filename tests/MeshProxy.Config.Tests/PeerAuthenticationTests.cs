using MeshProxy.Config.Parsing;
using MeshProxy.Config.Resources;

namespace MeshProxy.Config.Tests;

/// <summary>PeerAuthentication: the parser (table of good and bad documents) and Istio's precedence (port, workload, namespace, mesh, MeshConfig).</summary>
public sealed class PeerAuthenticationTests
{
    private const string Head = "apiVersion: meshproxy.io/v1alpha1\nkind: PeerAuthentication\n";

    private static readonly Dictionary<string, string> Reviews = new() { ["app"] = "reviews", ["version"] = "v1" };

    [Fact]
    public void Every_field()
    {
        var result = ResourceParser.ParseText(Head + """
            metadata: { name: reviews, namespace: shop }
            spec:
              selector: { matchLabels: { app: reviews } }
              mtls: { mode: PERMISSIVE }
              portLevelMtls:
                8080: { mode: DISABLE }
                "9090": { mode: strict }
                9091: { mode: UNSET }
            """, "pa.yaml");

        Assert.Empty(result.Errors);
        Assert.Empty(result.Warnings);
        var spec = Assert.IsType<PeerAuthenticationResource>(Assert.Single(result.Resources)).Spec;
        Assert.Equal("reviews", spec.MatchLabels["app"]);
        Assert.Equal(MtlsMode.Permissive, spec.Mode);
        Assert.Equal(MtlsMode.Disable, spec.PortLevel[8080]);
        Assert.Equal(MtlsMode.Strict, spec.PortLevel[9090]);
        Assert.Null(spec.PortLevel[9091]);
    }

    [Theory]
    [InlineData("spec: {}", null)]
    [InlineData("spec: { mtls: {} }", null)]
    [InlineData("spec: { mtls: { mode: UNSET } }", null)]
    [InlineData("spec: { mtls: { mode: STRICT } }", MtlsMode.Strict)]
    [InlineData("spec: { mtls: { mode: PERMISSIVE } }", MtlsMode.Permissive)]
    [InlineData("spec: { mtls: { mode: DISABLE } }", MtlsMode.Disable)]
    public void Modes(string spec, MtlsMode? expected)
    {
        var result = ResourceParser.ParseText(Head + "metadata: { name: default, namespace: shop }\n" + spec, "pa.yaml");

        Assert.Empty(result.Errors);
        var parsed = Assert.IsType<PeerAuthenticationResource>(Assert.Single(result.Resources)).Spec;
        Assert.Equal(expected, parsed.Mode);
        Assert.False(parsed.HasSelector);
    }

    [Theory]
    [InlineData("spec: { mtls: { mode: OPTIONAL } }", "spec.mtls.mode", "'OPTIONAL' is not one of UNSET, STRICT, PERMISSIVE, DISABLE")]
    [InlineData("spec: { mtls: { mdoe: PERMISSIVE } }", "spec.mtls.mdoe", "unknown field")]
    [InlineData("spec: { mtl: { mode: PERMISSIVE } }", "spec.mtl", "unknown field")]
    [InlineData("spec: { mtls: STRICT }", "spec.mtls", "must be a mapping")]
    [InlineData("spec: { portLevelMtls: { 8080: { mode: DISABLE } } }", "spec.portLevelMtls", "needs a workload selector")]
    [InlineData("spec: { selector: { matchLabels: { app: a } }, portLevelMtls: { http: { mode: DISABLE } } }", "spec.portLevelMtls.http", "'http' is not a port number (1-65535)")]
    [InlineData("spec: { selector: { matchLabels: { app: a } }, portLevelMtls: { 0: { mode: DISABLE } } }", "spec.portLevelMtls.0", "is not a port number")]
    [InlineData("spec: { selector: { matchLabels: { app: a } }, portLevelMtls: { 65536: { mode: DISABLE } } }", "spec.portLevelMtls.65536", "is not a port number")]
    [InlineData("spec: { selector: { matchLabels: { app: a } }, portLevelMtls: { -1: { mode: DISABLE } } }", "spec.portLevelMtls.-1", "is not a port number")]
    [InlineData("spec: { selector: { matchLabels: { app: a } }, portLevelMtls: { 8080: {} } }", "spec.portLevelMtls.8080.mode", "is required")]
    [InlineData("spec: { selector: { matchLabels: { app: a } }, portLevelMtls: { 8080: DISABLE } }", "spec.portLevelMtls.8080", "must be a mapping")]
    [InlineData("spec: { selector: { matchLabels: { app: a } }, portLevelMtls: { 8080: { mode: DISABLE, tls: x } } }", "spec.portLevelMtls.8080.tls", "unknown field")]
    [InlineData("spec: { selector: {} }", "spec.selector.matchLabels", "needs at least one label")]
    [InlineData("spec: { selector: { matchLabels: {} } }", "spec.selector.matchLabels", "needs at least one label")]
    [InlineData("spec: { selector: { matchLabels: { app: a }, matchExpressions: [] } }", "spec.selector.matchExpressions", "unknown field")]
    [InlineData("spec: { selector: { matchLabels: { app: [a] } } }", "spec.selector.matchLabels.app", "must be a string")]
    public void Refused_with_file_field_and_reason(string spec, string field, string reason)
    {
        var result = ResourceParser.ParseText(Head + "metadata: { name: bad, namespace: shop }\n" + spec, "pa.yaml");

        Assert.Empty(result.Resources);
        var error = Assert.Single(result.Errors, e => e.FieldPath == field);
        Assert.Equal("pa.yaml", error.File);
        Assert.True(error.Line > 0);
        Assert.Contains(reason, error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void One_bad_policy_leaves_the_others_of_its_file()
    {
        var result = ResourceParser.ParseText(Head + """
            metadata: { name: good, namespace: shop }
            spec: { mtls: { mode: STRICT } }
            ---
            """ + "\n" + Head + """
            metadata: { name: bad, namespace: shop }
            spec: { mtls: { mode: MAYBE } }
            """, "pa.yaml");

        Assert.Equal("good", Assert.Single(result.OfKind<PeerAuthenticationResource>()).Metadata.Name);
        Assert.Equal(9, Assert.Single(result.Errors).Line); // the line of spec.mtls.mode in the second document
    }

    // Resolution: each case lists policies as "namespace/name mode [labels] [port=mode ...]"; the workload is reviews in shop.
    public static TheoryData<string[], int, MtlsMode, string> Precedence() => new()
    {
        { [], 8080, MtlsMode.Strict, "default" },
        { ["meshproxy-system/mesh PERMISSIVE"], 8080, MtlsMode.Permissive, "PeerAuthentication/meshproxy-system/mesh" },
        { ["meshproxy-system/mesh PERMISSIVE", "shop/ns STRICT"], 8080, MtlsMode.Strict, "PeerAuthentication/shop/ns" },
        { ["meshproxy-system/mesh PERMISSIVE", "shop/ns UNSET"], 8080, MtlsMode.Permissive, "PeerAuthentication/meshproxy-system/mesh" },
        { ["meshproxy-system/mesh STRICT", "shop/ns PERMISSIVE", "shop/wl DISABLE app=reviews"], 8080, MtlsMode.Disable, "PeerAuthentication/shop/wl" },
        { ["shop/ns PERMISSIVE", "shop/wl UNSET app=reviews"], 8080, MtlsMode.Permissive, "PeerAuthentication/shop/ns" },
        { ["shop/ns PERMISSIVE", "shop/wl STRICT app=reviews 8080=DISABLE"], 8080, MtlsMode.Disable, "PeerAuthentication/shop/wl portLevelMtls[8080]" },
        { ["shop/ns PERMISSIVE", "shop/wl STRICT app=reviews 8080=DISABLE"], 9090, MtlsMode.Strict, "PeerAuthentication/shop/wl" },
        { ["shop/ns PERMISSIVE", "shop/wl UNSET app=reviews 9090=STRICT"], 8080, MtlsMode.Permissive, "PeerAuthentication/shop/ns" },
        { ["shop/ns PERMISSIVE", "shop/wl UNSET app=reviews 9090=STRICT"], 9090, MtlsMode.Strict, "PeerAuthentication/shop/wl portLevelMtls[9090]" },
        { ["shop/ns DISABLE", "shop/wl STRICT app=reviews 8080=UNSET"], 8080, MtlsMode.Strict, "PeerAuthentication/shop/wl" },
        // Not this workload's: another namespace, a selector that does not match, a selector in the root namespace.
        { ["other/ns PERMISSIVE"], 8080, MtlsMode.Strict, "default" },
        { ["shop/wl PERMISSIVE app=ratings 8080=DISABLE"], 8080, MtlsMode.Strict, "default" },
        { ["shop/wl PERMISSIVE app=reviews version=v2"], 8080, MtlsMode.Strict, "default" },
        { ["other/wl PERMISSIVE app=reviews"], 8080, MtlsMode.Strict, "default" },
        { ["meshproxy-system/wl PERMISSIVE app=reviews"], 8080, MtlsMode.Strict, "default" },
        // Two at one level: the first by name, whatever the order given.
        { ["shop/b PERMISSIVE", "shop/a DISABLE"], 8080, MtlsMode.Disable, "PeerAuthentication/shop/a" },
        { ["shop/b PERMISSIVE app=reviews", "shop/a DISABLE app=reviews"], 8080, MtlsMode.Disable, "PeerAuthentication/shop/a" },
    };

    [Theory]
    [MemberData(nameof(Precedence))]
    public void Most_specific_wins(string[] policies, int port, MtlsMode mode, string setBy)
    {
        var resolved = PeerAuthenticationResolver.Resolve(policies.Select(Policy), "shop", Reviews, meshConfig: null);

        Assert.Equal(new MtlsSetting(mode, setBy), resolved.For(port));
    }

    [Fact]
    public void MeshConfig_mode_is_the_floor_below_every_policy()
    {
        var meshConfig = Assert.IsType<MeshConfigResource>(Assert.Single(ResourceParser.ParseText("""
            apiVersion: meshproxy.io/v1alpha1
            kind: MeshConfig
            metadata: { name: mesh, namespace: istio-system }
            spec: { rootNamespace: istio-system, mtls: { mode: PERMISSIVE } }
            """, "mesh.yaml").Resources));

        Assert.Equal(new MtlsSetting(MtlsMode.Permissive, "MeshConfig/istio-system/mesh"), PeerAuthenticationResolver.Resolve([], "shop", Reviews, meshConfig).For(1));
        // The root namespace is MeshConfig's: a policy there is mesh-wide, one in the default root namespace is a namespace's like any other.
        Assert.Equal(MtlsMode.Strict, PeerAuthenticationResolver.Resolve([Policy("istio-system/mesh STRICT")], "shop", Reviews, meshConfig).For(1).Mode);
        Assert.Equal(MtlsMode.Permissive, PeerAuthenticationResolver.Resolve([Policy("meshproxy-system/mesh STRICT")], "shop", Reviews, meshConfig).For(1).Mode);
    }

    [Fact]
    public void In_effect_lists_at_most_one_policy_per_level_least_specific_first()
    {
        var policies = new[] { "shop/wl2 STRICT app=reviews", "shop/wl1 DISABLE app=reviews", "shop/ns PERMISSIVE", "meshproxy-system/mesh STRICT", "other/ns DISABLE", "shop/x STRICT app=ratings" }.Select(Policy);

        var inEffect = PeerAuthenticationResolver.InEffect(policies, "shop", Reviews, "meshproxy-system");

        Assert.Equal(["PeerAuthentication/meshproxy-system/mesh", "PeerAuthentication/shop/ns", "PeerAuthentication/shop/wl1"], inEffect.Select(p => p.Key));

        // In the root namespace a selector is ignored, even for that namespace's own workloads (Istio's rule).
        var root = PeerAuthenticationResolver.InEffect(
            new[] { "meshproxy-system/mesh PERMISSIVE", "meshproxy-system/wl DISABLE app=reviews" }.Select(Policy), "meshproxy-system", Reviews, "meshproxy-system");
        Assert.Equal(["PeerAuthentication/meshproxy-system/mesh"], root.Select(p => p.Key));
    }

    private static PeerAuthenticationResource Policy(string text)
    {
        var parts = text.Split(' ');
        var (ns, name) = (parts[0].Split('/')[0], parts[0].Split('/')[1]);
        var labels = parts.Skip(2).Where(p => !char.IsDigit(p[0])).Select(p => p.Split('=')).ToDictionary(p => p[0], p => p[1]);
        var ports = parts.Skip(2).Where(p => char.IsDigit(p[0])).Select(p => p.Split('=')).ToDictionary(p => int.Parse(p[0], System.Globalization.CultureInfo.InvariantCulture), p => ModeOf(p[1]));
        return new PeerAuthenticationResource(
            new ObjectMeta(name, ns, new Dictionary<string, string>(), new Dictionary<string, string>()),
            new SourceLocation("pa.yaml", 1),
            new PeerAuthenticationSpec(labels, ModeOf(parts[1]), ports));
    }

    private static MtlsMode? ModeOf(string text) => text == "UNSET" ? null : Enum.Parse<MtlsMode>(text, ignoreCase: true);

    [Fact]
    public void A_sidecars_workload_labels_default_to_its_metadata_labels_also_when_spec_workload_is_written()
    {
        // Workload selectors (PeerAuthentication, AuthorizationPolicy, EgressPolicy) read these: a sidecar whose
        // labels were silently empty was matched by no workload-scope policy.
        var sidecar = Assert.IsType<SidecarResource>(Assert.Single(ResourceParser.ParseText("""
            apiVersion: meshproxy.io/v1alpha1
            kind: Sidecar
            metadata: { name: billing, namespace: shop, labels: { app: billing } }
            spec: { workload: { serviceAccount: billing }, app: { port: 8080 } }
            """, "sidecar.yaml").ThrowIfInvalid().Resources));

        Assert.Equal("billing", sidecar.Spec.Workload.Labels["app"]);
    }
}
