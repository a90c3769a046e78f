using System.Text;

namespace MeshProxy.Injection.Capture;

/// <summary>
/// Builds the nat-table rules of a pod as <c>iptables-restore --noflush</c> input: the one rule
/// builder behind both the webhook's decisions and <c>meshproxy-init</c>.
/// </summary>
/// <remarks>
/// The shape is Istio's, so operators can read it: PREROUTING sends inbound TCP through
/// MESHPROXY_INBOUND (port exclusions, then MESHPROXY_IN_REDIRECT to 15006); OUTPUT sends the pod's
/// own TCP through MESHPROXY_OUTPUT, where the proxy's own traffic (uid/gid 1337) and loopback return
/// untouched and the rest goes to MESHPROXY_REDIRECT (15001). Two loopback cases matter:
/// the proxy dialling its own pod's address (the app calling its own service) leaves through lo and
/// must come back in as inbound; and connections from 127.0.0.6 are the inbound passthrough, never
/// captured again.
/// </remarks>
public static class IptablesRules
{
    public const string Output = "MESHPROXY_OUTPUT";
    public const string Inbound = "MESHPROXY_INBOUND";
    public const string Redirect = "MESHPROXY_REDIRECT";
    public const string InRedirect = "MESHPROXY_IN_REDIRECT";

    public static readonly string PreroutingJump = $"-A PREROUTING -p tcp -j {Inbound}";
    public static readonly string OutputJump = $"-A OUTPUT -p tcp -j {Output}";

    /// <summary>
    /// The restore input. Declaring our chains flushes them (<c>--noflush</c> keeps everything else);
    /// the jumps from PREROUTING and OUTPUT already present (counted from <c>iptables-save</c>) are
    /// deleted and added once, so running again replaces rather than duplicates, in one transaction.
    /// </summary>
    public static string Build(CaptureSettings settings, int existingPreroutingJumps = 0, int existingOutputJumps = 0)
    {
        var uid = settings.ProxyUid;
        var gid = settings.ProxyGid;
        var rules = new StringBuilder();
        rules.Append("*nat\n");
        foreach (var chain in new[] { Inbound, InRedirect, Output, Redirect })
        {
            rules.Append($":{chain} - [0:0]\n");
        }

        for (var i = 0; i < existingPreroutingJumps; i++)
        {
            rules.Append(PreroutingJump.Replace("-A ", "-D ", StringComparison.Ordinal)).Append('\n');
        }

        for (var i = 0; i < existingOutputJumps; i++)
        {
            rules.Append(OutputJump.Replace("-A ", "-D ", StringComparison.Ordinal)).Append('\n');
        }

        rules.Append($"-A {Redirect} -p tcp -j REDIRECT --to-ports {settings.OutboundPort}\n");
        rules.Append($"-A {InRedirect} -p tcp -j REDIRECT --to-ports {settings.InboundPort}\n");

        // Inbound: the sidecar's own ports and the pod's exclusions stay direct.
        var excludedInbound = CaptureSettings.SidecarPorts.Concat(settings.ExcludeInboundPorts).Distinct().ToList();
        if (settings.IncludeInboundPorts is null)
        {
            foreach (var port in excludedInbound)
            {
                rules.Append($"-A {Inbound} -p tcp --dport {port} -j RETURN\n");
            }

            rules.Append($"-A {Inbound} -p tcp -j {InRedirect}\n");
        }
        else
        {
            foreach (var port in settings.IncludeInboundPorts.Distinct().Where(p => !excludedInbound.Contains(p)))
            {
                rules.Append($"-A {Inbound} -p tcp --dport {port} -j {InRedirect}\n");
            }
        }

        rules.Append(PreroutingJump).Append('\n');

        // Outbound, in order: inbound passthrough; proxy-to-own-pod-address as inbound; the app's
        // loopback traffic untouched; the proxy's own traffic untouched; then the pod's exclusions.
        rules.Append($"-A {Output} -o lo -s 127.0.0.6/32 -j RETURN\n");
        rules.Append($"-A {Output} -o lo ! -d 127.0.0.1/32 -m owner --uid-owner {uid} -j {InRedirect}\n");
        rules.Append($"-A {Output} -o lo -m owner ! --uid-owner {uid} -j RETURN\n");
        rules.Append($"-A {Output} -m owner --uid-owner {uid} -j RETURN\n");
        rules.Append($"-A {Output} -o lo ! -d 127.0.0.1/32 -m owner --gid-owner {gid} -j {InRedirect}\n");
        rules.Append($"-A {Output} -o lo -m owner ! --gid-owner {gid} -j RETURN\n");
        rules.Append($"-A {Output} -m owner --gid-owner {gid} -j RETURN\n");
        rules.Append($"-A {Output} -d 127.0.0.1/32 -j RETURN\n");
        foreach (var port in settings.ExcludeOutboundPorts.Distinct())
        {
            rules.Append($"-A {Output} -p tcp --dport {port} -j RETURN\n");
        }

        foreach (var range in settings.ExcludeOutboundIPRanges.Distinct())
        {
            rules.Append($"-A {Output} -d {range} -j RETURN\n");
        }

        if (settings.IncludeOutboundIPRanges is null)
        {
            rules.Append($"-A {Output} -j {Redirect}\n");
        }
        else
        {
            foreach (var range in settings.IncludeOutboundIPRanges.Distinct())
            {
                rules.Append($"-A {Output} -d {range} -j {Redirect}\n");
            }
        }

        rules.Append(OutputJump).Append('\n');
        rules.Append("COMMIT\n");
        return rules.ToString();
    }

    /// <summary>Counts our jumps in <c>iptables-save -t nat</c> output, so <see cref="Build"/> can replace them.</summary>
    public static (int Prerouting, int Output) CountJumps(string iptablesSave)
    {
        var lines = iptablesSave.Split('\n', StringSplitOptions.TrimEntries);
        return (lines.Count(l => l == PreroutingJump), lines.Count(l => l == OutputJump));
    }
}
